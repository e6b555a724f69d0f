"""Per-stage share of a trained detector's end-to-end latency (letterbox / model / NMS) at several sizes.

``latlab profile --pipeline`` times any model; an untrained one sends (almost) no boxes to NMS, so this
script loads trained weights (a ``latlab train`` checkpoint, default: the yolov5n that ``int8_drop.py``
trains) and profiles one 1280×720 frame at each ``--imgsz``, at val's confidence (0.001: the most boxes)
and at a deployment's (0.25). Prints one table per setting and writes ``pipeline.csv`` + ``meta.json``.

    python benchmarks/pipeline_shares.py [--weights results/int8-drop/runs/yolov5n/last.pt] [--imgsz 320,640]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from latlab.detection.data import load_dataset
from latlab.detection.evaluate import load_detector
from latlab.detection.pipeline import DEPLOY_CONF, VAL_CONF, profile_pipeline
from latlab.runs import RunWriter, new_run_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="yolov5n")
    ap.add_argument("--weights", type=Path, default=Path("results/int8-drop/runs/yolov5n/last.pt"))
    ap.add_argument("--preset", default="shapes4-easy", help="built-in data preset the weights were trained on")
    ap.add_argument("--imgsz", default="320,640")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--budget", type=float, default=15.0, help="seconds of interleaved timing per setting")
    args = ap.parse_args()
    data = load_dataset("builtin", imgsz=64, n_train=16, n_val=8, preset=args.preset)  # only its classes
    model, _ = load_detector(args.model, args.weights, data)
    rows, meta = [], []
    for size in (int(s) for s in args.imgsz.split(",")):
        for conf in (VAL_CONF, DEPLOY_CONF):
            prof = profile_pipeline(model, imgsz=size, threads=args.threads, conf_thres=conf, budget_s=args.budget)
            print(f"\n{args.model} @ {size} px, conf {conf:g}: {prof.summary()}")
            cols = ["stage", "estimate_ms", "ci_low_ms", "ci_high_ms", "iqr_ms", "share", "of_e2e"]
            print(prof.table[cols].round(3).to_string(index=False))
            rows.append(prof.table.assign(model=args.model, imgsz=size, conf=conf))
            meta.append(prof.meta() | {"imgsz": size})
    out = new_run_dir("pipeline-shares")
    writer = RunWriter(out, "pipeline-shares", threads=args.threads)
    writer.save_table(pd.concat(rows, ignore_index=True), "pipeline")
    writer.write_meta(weights=str(args.weights), settings=meta, tables=["pipeline.csv"])
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
