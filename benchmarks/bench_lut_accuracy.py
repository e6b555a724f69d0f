"""Accuracy of a latency table on this machine: build (or reuse) a table, then `lut check` twice.

    python benchmarks/bench_lut_accuracy.py [--lut FILE] [--space SPACE.yaml] [--imgsz 160] [--n 50]

Prints, for the raw block sum and the calibrated prediction, % within ±5 % / ±10 %, MAPE, Spearman ρ and
Kendall τ for each of the two check runs and their spread, next to the issue's targets (calibrated: ≥ 95 %
within ±10 %, Spearman ≥ 0.95). Both runs are saved as run folders (results/lut-check/...). Timing
figures are only meaningful on an otherwise idle machine; the script says when it was busy.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

from latlab.lut.build import build_table
from latlab.lut.check import check_table
from latlab.lut.table import LatencyTable
from latlab.search.coverage import space_source, table_source


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lut", type=Path, default=Path("results/lut/cpu-160.lut.json"),
                    help="table to check (built here first when missing or partial)")
    ap.add_argument("--space", type=Path, default=None, help="search space (default: the shipped one)")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--n", type=int, default=50)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()

    busy: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.time()
        if not args.lut.exists() or args.lut.with_name(args.lut.name + ".partial").exists():
            r = build_table(args.lut, source=space_source(args.space), imgsz=args.imgsz, threads=args.threads)
            print(f"built {args.lut}: {len(r.table.entries)} entries in {time.time() - t0:.0f} s")
        table = LatencyTable.load(args.lut)
        cal = table.calibration
        print(f"table {args.lut}: {len(table.entries)} entries, {table.backend}, {table.threads} thread(s), "
              f"{table.imgsz}px, calibration {cal.method if cal else None} {cal.coef if cal else ''}")
        results = []
        for i in range(args.runs):
            t1 = time.time()
            res = check_table(table, source=table_source(table, args.space), n=args.n, seed=2 + i)
            results.append(res)
            print(f"check run {i + 1} (seed {2 + i}): {time.time() - t1:.0f} s, saved to {res.run_dir}")
        busy = sorted({str(w.message) for w in caught if "busy" in str(w.message)})

    cols = ("within_5_pct", "within_10_pct", "mape_pct", "spearman", "kendall")
    for pred in ("raw_sum", "calibrated"):
        print(f"\n{pred}:")
        for c in cols:
            vals = [r.metric(pred, c) for r in results]
            spread = max(vals) - min(vals)
            print(f"  {c:14s} " + "  ".join(f"{v:7.3f}" for v in vals) + f"   spread {spread:.3f}")
    ok10 = [r.metric("calibrated", "within_10_pct") for r in results]
    rho = [r.metric("calibrated", "spearman") for r in results]
    print(f"\ntargets (calibrated): >= 95 % within ±10 % -> {ok10}; Spearman >= 0.95 -> "
          f"{[round(v, 3) for v in rho]}")
    if busy:
        print("WARNING: the machine was busy during timing; these numbers are noise:\n  " + "\n  ".join(busy))


if __name__ == "__main__":
    main()
