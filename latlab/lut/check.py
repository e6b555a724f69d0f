"""How good is a table? Predict random architectures of the space and measure them end to end here.

``check_table`` samples ``n`` architectures (seed ``seed``; the calibration models of the table are
excluded, so the check is out of sample), predicts each from the table (raw block sum and calibrated), and
measures all of them end to end in one interleaved run with the table's backend, threads and estimator.
Reported for both predictions: % within ±5 % and ±10 %, mean absolute % error (MAPE), Spearman ρ and
Kendall τ against the measurements.

Result columns (``CheckResult.models``): ``arch``, ``arch_hash``, ``measured_ms``, ``measured_median_ms``,
``sum_ms``, ``predicted_ms``, ``sum_err_pct``, ``pred_err_pct`` (signed, prediction / measured − 1),
``madds``, ``mac_bytes``, ``measured_now`` (blocks timed on the fly), ``speed_factor`` (the machine's speed
during the measurement relative to its reference; ``latlab.profiling.speed``). ``metrics`` has one row per
predictor (``raw_sum``, ``calibrated``): ``within_5_pct``, ``within_10_pct``, ``mape_pct``, ``spearman``, ``kendall``,
``n``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from latlab.errors import TableError
from latlab.lut.build import ArchSource
from latlab.lut.measure import measure_models
from latlab.lut.predict import LatencyPredictor
from latlab.lut.table import LatencyTable
from latlab.ops.builder import build_model
from latlab.progress import ProgressReporter
from latlab.runs import RunWriter, new_run_dir

CHECK_SEED = 2


def accuracy(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """% within ±5 %/±10 %, MAPE, Spearman ρ and Kendall τ of ``predicted`` against ``measured``."""
    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    rel = np.abs(p / m - 1.0)
    rho = float(stats.spearmanr(p, m).statistic) if len(p) > 2 else float("nan")
    tau = float(stats.kendalltau(p, m).statistic) if len(p) > 2 else float("nan")
    eps = 1e-9  # 2.2 / 2 - 1 is 0.10000000000000009 in floating point
    return {"within_5_pct": 100.0 * float(np.mean(rel <= 0.05 + eps)),
            "within_10_pct": 100.0 * float(np.mean(rel <= 0.10 + eps)),
            "mape_pct": 100.0 * float(np.mean(rel)), "spearman": rho, "kendall": tau, "n": len(p)}


@dataclass
class CheckResult:
    """Per-model rows, the metrics table, and where it was saved."""

    models: pd.DataFrame
    metrics: pd.DataFrame
    table: dict[str, Any]
    run_dir: Path | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def metric(self, predictor: str, name: str) -> float:
        return float(self.metrics.set_index("predictor").loc[predictor, name])

    def to_json(self) -> dict[str, Any]:
        return {"table": self.table, "settings": self.settings, "run_dir": str(self.run_dir) if self.run_dir else None,
                "metrics": self.metrics.to_dict(orient="records")}


def check_table(lut: str | Path | LatencyTable, *, source: ArchSource, n: int = 50, seed: int = CHECK_SEED,
                rounds: int | None = None, on_missing: str = "auto", save: bool = True,
                out: str | Path | None = None, progress: bool | ProgressReporter = True, backend: str | None = None,
                device: str | None = None) -> CheckResult:
    """Library entry of ``latlab lut check`` (see the module docstring); writes a run folder when ``save``.

    ``source`` is what to sample from: ``latlab.search.coverage.table_source(table, space)`` is the space the
    table was built from (or ``space``). ``backend``/``device`` (default: the table's) must match the table's:
    a table is checked as measured."""
    table = lut if isinstance(lut, LatencyTable) else LatencyTable.load(lut)
    table.check(backend=backend)
    if device is not None and device != table.device:
        raise TableError(f"{table.path or 'latency table'}: measured on device '{table.device}', but '{device}' "
                         f"was requested; build a table with --device {device} or request --device {table.device}")
    if table.calibration is None:
        raise TableError(f"{table.path or 'latency table'}: has no calibration (build incomplete?); finish the "
                         "build so the check can compare calibrated predictions")
    if n < 3:
        raise TableError(f"lut check needs n >= 3 architectures for rank correlations, got {n}")
    exclude = [m.get("arch_hash", "") for m in table.calibration.models]
    archs = source.sample(n, seed, exclude)
    predictor = LatencyPredictor(table, on_missing=on_missing, progress=progress)
    nets, preds = {}, {}
    for a in archs:
        nets[a.name] = build_model(a.cfg)
        preds[a.name] = predictor.explain(nets[a.name])
    meas = measure_models(nets, table.imgsz, backend=table.backend, threads=table.threads, device=table.device,
                          rounds=rounds or int(table.protocol.get("rounds", 60)), estimator=table.estimator,
                          progress=progress)
    rows = []
    for a in archs:
        p, m = preds[a.name], meas[a.name]
        rows.append({"arch": a.name, "arch_hash": a.arch_hash, "measured_ms": m.estimate_ms,
                     "measured_median_ms": m.median_ms, "sum_ms": p.sum_ms, "predicted_ms": p.predicted_ms,
                     "sum_err_pct": 100.0 * (p.sum_ms / m.estimate_ms - 1),
                     "pred_err_pct": 100.0 * (p.predicted_ms / m.estimate_ms - 1),
                     "madds": p.madds, "mac_bytes": p.mac_bytes, "measured_now": len(p.measured_now),
                     "speed_factor": m.speed_factor})
    df = pd.DataFrame(rows)
    metrics = pd.DataFrame([
        {"predictor": "raw_sum", **accuracy(df["sum_ms"].to_numpy(), df["measured_ms"].to_numpy())},
        {"predictor": "calibrated", **accuracy(df["predicted_ms"].to_numpy(), df["measured_ms"].to_numpy())},
    ])
    settings = {"n": n, "seed": seed, "rounds": rounds or int(table.protocol.get("rounds", 60)),
                "space": source.info.get("source"), "imgsz": table.imgsz,
                "calibration": table.calibration.method}
    result = CheckResult(df, metrics, table.identity(), None, settings)
    if save:
        run_dir = Path(out) if out else new_run_dir("lut-check")
        writer = RunWriter(run_dir, "lut-check", threads=table.threads, device=table.device)
        writer.save_table(df, "models")
        writer.save_table(metrics, "metrics")
        writer.write_meta(lut=table.identity(), settings=settings, backend=table.backend,
                          estimator=table.estimator, metrics=metrics.to_dict(orient="records"))
        result.run_dir = run_dir
    return result
