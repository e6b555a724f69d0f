"""Rank fidelity of every accuracy estimator on the shipped reference set (issue: "An accuracy axis you can
trust", item 1).

Run as a script::

    python benchmarks/bench_fidelity.py [--estimators synflow,naswot,...] [--reference FILE] [--set FILE]
                                        [--out DIR] [--also-train-epochs 8]
                                        [--publish latlab/configs/fidelity/fidelity_v2.csv]

It calls :func:`latlab.search.fidelity_run.run_fidelity` (what ``latlab fidelity run`` calls), prints the
table (Kendall τ and Spearman ρ with 95 % bootstrap CIs, CPU seconds per candidate, beats #params), the noise
ceiling and the data-separation numbers (spread of reference mAP vs seed-to-seed sd), and writes the run
folder. The reference trainings themselves come from ``latlab fidelity reference`` (resumable; shipped in
``latlab/configs/fidelity/reference_v1.csv`` and ``reference_v2.csv``, the default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from latlab.search.fidelity_run import DEFAULT_CACHE, publish, run_fidelity
from latlab.search.reference import DEFAULT_RESULTS, DEFAULT_SET
from latlab.validate import positive_int_list


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--estimators", default=None, help="comma-separated names (default: every registered one)")
    ap.add_argument("--reference", type=Path, default=DEFAULT_RESULTS, help="reference results CSV")
    ap.add_argument("--set", type=Path, default=DEFAULT_SET, help="reference set YAML")
    ap.add_argument("--out", type=Path, default=None, help="run folder (default results/fidelity/<time>/)")
    ap.add_argument("--n-boot", type=int, default=2000)
    ap.add_argument("--also-train-epochs", default="", help="more budgets for the estimators that train, e.g. 8")
    ap.add_argument("--publish", type=Path, default=None, help="copy the table here (+ .json sidecar)")
    args = ap.parse_args(argv)
    names = [s.strip() for s in args.estimators.split(",") if s.strip()] if args.estimators else None
    res = run_fidelity(names, reference_set=args.set, reference_results=args.reference, out_dir=args.out,
                       n_boot=args.n_boot, progress=print, cache=DEFAULT_CACHE,
                       extra_train_epochs=positive_int_list(args.also_train_epochs, "--also-train-epochs",
                                                            item="an epoch count") if args.also_train_epochs else ())
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        print(res.table.round(3).to_string(index=False))
    print(res.separation.text())
    print(f"run folder: {res.path}")
    if args.publish:
        print(f"published: {publish(res.path, args.publish)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
