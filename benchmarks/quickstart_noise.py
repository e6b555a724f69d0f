"""Seed-to-seed noise of the quick start's accuracy protocol: its baseline seed detectors trained exactly as the
quick start's search trains them (same settings object, same estimator), with two training seeds.

    python benchmarks/quickstart_noise.py [--seeds 0,1] [--out results/quickstart-noise] [--amp bf16]

Resumable: each (model, seed) lands in ``<out>/noise.csv`` as it finishes and is skipped on a rerun. Prints
the pooled seed-to-seed sd and the range of the per-model means; ``--publish`` copies the table and a JSON
sidecar (the protocol) to ``latlab/configs/quickstart_noise.csv``, which ``latlab quickstart`` reads to say
whether its front is more than noise. ``--amp bf16`` trains with CPU bf16 autocast instead (to measure its
effect on mAP against the same seeds in FP32; such a table cannot be published).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from latlab.appendfile import append_line
from latlab.quickstart import NOISE_FILE, QuickstartSettings, noise_sd, search_settings
from latlab.search.estimators.data import context_nc
from latlab.search.evaluate import baseline_cfg

COLUMNS = ["model", "seed", "map", "map50", "cost_s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", type=Path, default=Path("results/quickstart-noise"))
    ap.add_argument("--publish", action="store_true")
    ap.add_argument("--amp", default="auto", help="mixed precision of the trainings (auto: the quick start's)")
    args = ap.parse_args()
    if args.publish and args.amp != "auto":
        ap.error("--publish holds for the quick start's own precision only (leave --amp at auto)")
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "noise.csv"
    done = set()
    if table.is_file() and table.stat().st_size:
        old = pd.read_csv(table)
        done = {(m, int(s)) for m, s in zip(old["model"], old["seed"], strict=True)}
    base = QuickstartSettings()
    for seed in (int(x) for x in args.seeds.split(",")):
        settings = replace(search_settings(QuickstartSettings(seed=seed), args.out), amp=args.amp)
        ctx = settings.estimator_context()
        nc = context_nc(ctx)
        estimator = settings.make_accuracy(nc)
        for model in base.baselines:
            if (model, seed) in done:
                continue
            t0 = time.perf_counter()
            est = estimator.estimate_baseline(baseline_cfg(model, nc), out_dir=args.out / f"{model}-{seed}")
            row = {"model": model, "seed": seed, "map": round(float(est.map), 6),
                   "map50": round(float(est.map50), 6), "cost_s": round(float(est.cost_s), 1)}
            append_line(table, ",".join(str(row[c]) for c in COLUMNS), header=",".join(COLUMNS))
            print(json.dumps(row | {"wall_s": round(time.perf_counter() - t0, 1)}), flush=True)
    noise = pd.read_csv(table)
    means = noise.groupby("model")["map"].mean()
    sd = noise_sd(noise)
    print(means.round(4).to_string())
    print(f"pooled seed-to-seed sd {sd:.4f}; range of model means {means.max() - means.min():.4f} "
          f"({(means.max() - means.min()) / sd:.1f}× the sd)")
    if args.publish:
        shutil.copyfile(table, NOISE_FILE)
        NOISE_FILE.with_suffix(".json").write_text(json.dumps(
            {"protocol": base.protocol(), "seed_sd": sd, "model_means": means.round(6).to_dict(),
             "measured": time.strftime("%Y-%m-%d"), "script": "benchmarks/quickstart_noise.py"}, indent=2) + "\n")
        print(f"published to {NOISE_FILE}")


if __name__ == "__main__":
    main()
