"""Calibration of a latency table: map the sum of block estimates to the end-to-end latency.

Blocks timed alone run with warm caches and without the glue between layers, so their sum is below the
end-to-end time; the calibration, fitted on models measured end to end on the same target, maps it back:

- ``scale``: ``a·sum``; ``linear``: ``a·sum + b``;
- ``regression``: ``a·sum + b·GMAdds + c·MB + d`` (madds and mac_bytes of the model, summed from the
  entries, which carry the counts of their block).

The fit minimises squared *relative* error, and :func:`fit_calibration` keeps the method with the lowest
leave-one-out mean absolute % error (``auto``). The fitted :class:`latlab.lut.table.Calibration` is stored
in the table by the build (:mod:`latlab.lut.build`) or the kit import (:mod:`latlab.lut.kit`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from latlab.errors import TableError
from latlab.lut.table import Calibration

METHODS = ("scale", "linear", "regression")
FEATURES = {"scale": ("sum_ms",), "linear": ("sum_ms", "intercept"),
            "regression": ("sum_ms", "gmadds", "mac_mb", "intercept")}


def _design(rows: Sequence[dict[str, Any]], method: str) -> np.ndarray:
    cols = []
    for f in FEATURES[method]:
        if f == "intercept":
            cols.append(np.ones(len(rows)))
        elif f == "gmadds":
            cols.append(np.array([r["madds"] / 1e9 for r in rows], dtype=float))
        elif f == "mac_mb":
            cols.append(np.array([r["mac_bytes"] / 1e6 for r in rows], dtype=float))
        else:
            cols.append(np.array([r[f] for r in rows], dtype=float))
    return np.stack(cols, axis=1)


def _fit(rows: Sequence[dict[str, Any]], method: str) -> dict[str, float]:
    """Least squares on relative error: minimise Σ((x·β − y) / y)²."""
    x = _design(rows, method)
    y = np.array([r["measured_ms"] for r in rows], dtype=float)
    beta, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    return {f: float(b) for f, b in zip(FEATURES[method], beta, strict=True)}


def _loo_mape(rows: Sequence[dict[str, Any]], method: str) -> float:
    """Leave-one-out mean absolute % error of ``method`` (inf when there are too few models)."""
    k = len(FEATURES[method])
    if len(rows) < k + 2:
        return float("inf")
    errs = []
    for i in range(len(rows)):
        coef = _fit([r for j, r in enumerate(rows) if j != i], method)
        cal = Calibration(method, coef)
        r = rows[i]
        errs.append(abs(cal.apply(r["sum_ms"], r["madds"], r["mac_bytes"]) / r["measured_ms"] - 1))
    return 100.0 * float(np.mean(errs))


def fit_calibration(rows: Sequence[dict[str, Any]], method: str = "auto") -> Calibration:
    """Fit the calibration on measured models (``sum_ms``, ``madds``, ``mac_bytes``, ``measured_ms`` each).

    ``auto`` picks the method with the lowest leave-one-out MAPE (ties go to the simpler one).
    """
    rows = [r for r in rows if r.get("measured_ms", 0) > 0 and r.get("sum_ms", 0) > 0]
    if not rows:
        raise TableError("calibration needs at least one model measured end to end whose blocks are all tabulated")
    if method != "auto" and method not in METHODS:
        raise TableError(f"unknown calibration method {method!r}: expected auto or one of {', '.join(METHODS)}")
    loo = {m: _loo_mape(rows, m) for m in METHODS}
    auto = method == "auto"
    if auto:
        finite = {m: v for m, v in loo.items() if np.isfinite(v)}
        method = min(finite, key=lambda m: (round(finite[m], 1), METHODS.index(m))) if finite else "scale"
    if len(rows) < len(FEATURES[method]):
        raise TableError(f"calibration method {method!r} needs at least {len(FEATURES[method])} measured models, "
                         f"got {len(rows)}")
    coef = _fit(rows, method)
    if coef.get("sum_ms", 1.0) <= 0 and auto:  # a table must not predict less for more blocks
        method, coef = "scale", _fit(rows, "scale")
    if coef.get("sum_ms", 1.0) <= 0:
        raise TableError(f"calibration method {method!r} fits a block-sum coefficient of {coef['sum_ms']:.4g} "
                         "(<= 0) on these models; use --calibration scale or measure more models")
    return Calibration(method, coef, {m: (round(v, 3) if np.isfinite(v) else None) for m, v in loo.items()},
                       [dict(r) for r in rows])
