"""Predict a model's latency from a table: sum of its block entries, then the stored calibration.

Every YAML layer is a table entry (stem, backbone blocks, neck, head), so the raw prediction is the sum over
the model's units (:func:`latlab.lut.keys.model_units`) of the entries' estimates. Blocks timed alone run
with warm caches and without the glue between layers, so that sum is below the end-to-end time
(benchmarks/README.md#block-sum-vs-end-to-end); the calibration, fitted on models measured end to end on the
same target and stored in the table, maps it back (:mod:`latlab.lut.calibration`; ``fit_calibration`` is re-exported here):

- ``scale``: ``a·sum``; ``linear``: ``a·sum + b``;
- ``regression``: ``a·sum + b·GMAdds + c·MB + d`` (madds and mac_bytes of the model, summed from the
  entries, which carry the counts of their block).

The fit minimises squared *relative* error, and :func:`fit_calibration` keeps the method with the lowest
leave-one-out mean absolute % error (``auto``).

A model with blocks the table lacks: on the device the table was built on (same CPU model, machine and core
count, and the backend available) the missing blocks are timed now with the table's protocol and added;
elsewhere a ``TableError`` lists them (``on_missing="measure"`` forces timing, ``"error"`` forbids it).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from latlab.errors import TableError
from latlab.fingerprint import device_fingerprint
from latlab.lut.calibration import FEATURES, METHODS, fit_calibration
from latlab.lut.keys import Unit, model_units
from latlab.lut.measure import count_units, measure_units
from latlab.lut.table import LatencyTable, device_key
from latlab.ops.builder import build_model
from latlab.profiling.backends import get_backend
from latlab.progress import ProgressReporter

__all__ = ["FEATURES", "METHODS", "ON_MISSING", "LatencyPredictor", "Prediction", "fit_calibration", "predict"]

ON_MISSING = ("auto", "measure", "error")


# ---------------------------------------------------------------------------------------------- predicting
@dataclass
class Prediction:
    """One model's prediction. ``units`` has one row per unit: ``layer``, ``path``, ``part``, ``type``,
    ``key``, ``estimate_ms``, ``median_ms``, ``measured_now`` (True if timed on the fly)."""

    sum_ms: float
    predicted_ms: float
    madds: int
    mac_bytes: int
    units: pd.DataFrame
    calibrated: bool
    measured_now: list[str] = field(default_factory=list)

    def by_part(self) -> pd.DataFrame:
        """Raw sums per part (stem, backbone, neck, head)."""
        return self.units.groupby("part", sort=False)["estimate_ms"].sum().reset_index()


class LatencyPredictor:
    """Predicts latency from a table; the object the search uses for ``--latency lut:FILE``.

    ``predict(model_or_cfg)`` returns the calibrated latency in ms (the raw sum when the table has no
    calibration); ``identity()`` is what a study records about the table.
    """

    def __init__(self, table: LatencyTable | str | Path, *, backend: str | None = None, threads: int | None = None,
                 imgsz: int | None = None, on_missing: str = "auto", save_measured: bool = False,
                 progress: bool | ProgressReporter = False):
        if on_missing not in ON_MISSING:
            raise TableError(f"on_missing must be one of {', '.join(ON_MISSING)}, got {on_missing!r}")
        self.table = table if isinstance(table, LatencyTable) else LatencyTable.load(table)
        precision = get_backend(backend).precision if backend is not None else None
        self.table.check(backend=backend, threads=threads, imgsz=imgsz, precision=precision)
        self.on_missing = on_missing
        self.save_measured = save_measured
        self.progress = progress

    @property
    def imgsz(self) -> int:
        return self.table.imgsz

    def identity(self) -> dict[str, Any]:
        return self.table.identity()

    def __call__(self, model: nn.Module | dict[str, Any] | str | Path) -> float:
        return self.predict(model)

    def predict(self, model: nn.Module | dict[str, Any] | str | Path) -> float:
        """Calibrated latency (ms, the table's estimator) of a built model, a model YAML dict, path or zoo name."""
        return self.explain(model).predicted_ms

    def explain(self, model: nn.Module | dict[str, Any] | str | Path) -> Prediction:
        """The full prediction: raw sum, calibrated value, counts and the per-unit rows."""
        net = _built(model)
        units = model_units(net, self.table.imgsz)
        missing = self.table.missing([u.key for u in units])
        measured: list[str] = []
        if missing:
            measured = self._fill(net, units, missing)
        return self._combine(units, measured)

    def _combine(self, units: list[Unit], measured: list[str]) -> Prediction:
        rows = []
        for u in units:
            e = self.table.entries[u.key]
            rows.append({"layer": u.layer, "path": u.path, "part": u.part, "type": u.type, "key": u.key,
                         "estimate_ms": e.estimate_ms, "median_ms": e.median_ms, "madds": e.madds,
                         "mac_bytes": e.mac_bytes, "measured_now": u.key in measured})
        df = pd.DataFrame(rows)
        total = float(df["estimate_ms"].sum())
        madds, mac = int(df["madds"].sum()), int(df["mac_bytes"].sum())
        cal = self.table.calibration
        pred = cal.apply(total, madds, mac) if cal else total
        return Prediction(total, float(pred), madds, mac, df, cal is not None, measured)

    def _fill(self, net: nn.Module, units: list[Unit], missing: list[str]) -> list[str]:
        here = device_key(device_fingerprint(self.table.threads, self.table.device))
        same = here == self.table.device_key
        where = str(self.table.path) if self.table.path else "latency table"
        if self.on_missing == "error" or (self.on_missing == "auto" and not same):
            reason = ("on_missing='error'" if self.on_missing == "error" else
                      f"this machine ({here}) is not the one the table was built on "
                      f"({self.table.device_key}, {self.table.fingerprint.get('cpu_model')}), so they cannot "
                      "be timed here")
            shown = "; ".join(missing[:3]) + (f"; … ({len(missing) - 3} more)" if len(missing) > 3 else "")
            raise TableError(f"{where}: {len(missing)} block(s) of this model are not in the table ({reason}): "
                             f"{shown}. Rebuild the table on the target with a space that contains them "
                             "(`latlab lut build --space ...` or a new kit)")
        if not same:
            warnings.warn(f"{where}: timing {len(missing)} missing block(s) on this machine, which is not the "
                          "one the table was built on", RuntimeWarning, stacklevel=3)
        by_key = {u.key: u for u in units}
        counts = count_units(net, units, self.table.imgsz)
        new = measure_units(self.table, [by_key[k] for k in missing], counts, progress=self.progress)
        if self.save_measured and self.table.path is not None:
            self.table.save(self.table.path)
        return list(new)


def _built(model: nn.Module | dict[str, Any] | str | Path) -> nn.Module:
    if isinstance(model, nn.Module):
        return model
    return build_model(model)


def predict(config: nn.Module | dict[str, Any] | str | Path, lut: str | Path | LatencyTable, *,
            backend: str | None = None, threads: int | None = None, on_missing: str = "auto",
            save_measured: bool = False) -> Prediction:
    """Library entry of ``latlab lut predict``: the :class:`Prediction` of one model from a table."""
    return LatencyPredictor(lut, backend=backend, threads=threads, on_missing=on_missing,
                            save_measured=save_measured).explain(config)
