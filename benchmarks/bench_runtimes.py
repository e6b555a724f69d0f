"""Latency of the seed detectors under every runtime that installs here, as ratios to eager torch.

    python benchmarks/bench_runtimes.py [--models yolov5s-shufflenetv2,yolov5n,yolov5s-mobilenetv3-small]
        [--backends onnxruntime,onnxruntime-int8,...] [--imgsz 320] [--threads 1] [--rounds 60] [--budget S]

Every (model, backend) pair is converted first (conversion seconds recorded as ``compile_s``, apart from
latency), then all pairs are timed in the same interleaved rounds in this one process
(``latlab.profiling.runtime_ratios.compare_runtimes``). Per model and round each backend is divided by eager
torch; the table shows the median per-round ratio with its bootstrap 95 % CI and each backend's latency
(estimator, median, IQR). Writes ``runtimes.csv``, ``rounds.csv`` and ``meta.json`` (device fingerprint,
runtime versions, skipped pairs and why) under ``results/bench_runtimes/<run>/``. Timing figures are only
meaningful on an otherwise idle machine; the script says when it was busy.
"""

from __future__ import annotations

import argparse
import math
import warnings

from rich.console import Console
from rich.table import Table

import latlab.detection  # noqa: F401  (registers the built-in images as the INT8 calibration source)
from latlab import build_model
from latlab.inputs import example_input
from latlab.profiling.backends import get_backend
from latlab.profiling.runtime_ratios import REFERENCE_BACKEND, compare_runtimes, installed_backends
from latlab.profiling.timer import DEFAULT_ESTIMATOR
from latlab.runs import RunWriter, new_run_dir

DEFAULT_MODELS = "yolov5s-shufflenetv2,yolov5n,yolov5s-mobilenetv3-small"


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _fmt(v: float, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=DEFAULT_MODELS, help="comma-separated zoo names or YAML paths")
    ap.add_argument("--backends", default=None,
                    help="comma-separated backends (default: every installed backend that runs on the CPU); "
                         "eager torch is always timed as the reference")
    ap.add_argument("--imgsz", type=int, default=320)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=60, help="interleaved rounds (each pair timed once a round)")
    ap.add_argument("--budget", type=float, default=None, help="stop after this many seconds of timing")
    ap.add_argument("--estimator", default=DEFAULT_ESTIMATOR)
    ap.add_argument("--name", default=None, help="run folder name (default: a timestamp)")
    args = ap.parse_args()

    backends = _names(args.backends) if args.backends else installed_backends("cpu")
    models = {name: build_model(name) for name in _names(args.models)}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = compare_runtimes(models, backends, example_input(args.imgsz), threads=args.threads,
                                  rounds=args.rounds, budget_s=args.budget, estimator=args.estimator)
    busy = sorted({str(w.message) for w in caught if "busy" in str(w.message)})
    table = result.table()

    out = new_run_dir("bench_runtimes", args.name)
    writer = RunWriter(out, "bench_runtimes", threads=args.threads)
    writer.save_table(table, "runtimes")
    writer.save_table(result.rounds_table(), "rounds")
    used = sorted({b for _, b in result.pairs.values()})
    writer.write_meta(models=list(models), backends=used, reference=REFERENCE_BACKEND, imgsz=args.imgsz,
                      rounds=result.run.rounds, estimator=result.run.estimator,
                      runtime_versions={b: get_backend(b).runtime_version() for b in used},
                      skipped=[{"model": m, "backend": b, "reason": why} for (m, b), why in result.skipped.items()],
                      warnings=result.run.warnings)

    view = Table(title=f"latency / eager torch, {args.imgsz} px, {args.threads} thread(s), "
                       f"{result.run.rounds} interleaved rounds",
                 caption="ratio: median over rounds of (backend / eager torch) in the same round; "
                         "CI: bootstrap over rounds")
    for col in ("model", "backend", "precision", f"{result.run.estimator} ms", "median ms", "IQR ms",
                "ratio", "95 % CI", "compile s"):
        view.add_column(col, justify="left" if col in ("model", "backend", "precision") else "right")
    for row in table.itertuples():
        view.add_row(row.model, row.backend, row.precision, _fmt(row.estimate_ms), _fmt(row.median_ms),
                     _fmt(row.iqr_ms), _fmt(row.ratio_median), f"[{_fmt(row.ratio_ci_low)}, {_fmt(row.ratio_ci_high)}]",
                     _fmt(row.compile_s, 1))
    console = Console(width=max(Console().width, 120))
    console.print(view)
    for (model, backend), why in result.skipped.items():
        console.print(f"skipped {model} @ {backend}: {why}")
    console.print(f"saved to {out}")
    if busy:
        console.print("WARNING: the machine was busy during timing; these numbers are noise:\n  " + "\n  ".join(busy))


if __name__ == "__main__":
    main()
