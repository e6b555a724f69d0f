"""Accuracy-per-budget benchmark: train yolov5n and the seed ShuffleNetV2 detector on the built-in data.

Each model trains for the same wall-clock budget (``--minutes``, default 10) at the default image size
on the built-in shapes dataset (nc 10), then the final EMA weights are scored with pycocotools. Prints
mAP50, mAP50-95, wall time and training images/s per model, and writes ``results/bench_train/<run>/``.
Run it on an otherwise idle machine: the budget is wall time, so a busy machine trains fewer images.

    python benchmarks/bench_train.py --minutes 10 --threads 2
"""

from __future__ import annotations

import argparse

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from latlab.detection.data import load_dataset
from latlab.detection.train import train
from latlab.runs import RunWriter, new_run_dir

MODELS = ("yolov5n", "yolov5s-shufflenetv2")


def main(argv: list[str] | None = None) -> pd.DataFrame:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training budget per model (wall time)")
    ap.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="train a fixed number of epochs instead (a budget a busy machine cannot shrink)",
    )
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    console = Console()
    data = load_dataset("builtin", imgsz=args.imgsz)
    console.print(f"data: {data.summary()}", highlight=False)
    out = new_run_dir("bench_train")
    rows = []
    for name in args.models:
        console.rule(name)
        r = train(
            name,
            data=data,
            minutes=None if args.epochs else args.minutes,
            epochs=args.epochs,
            imgsz=args.imgsz,
            batch=args.batch,
            seed=args.seed,
            out_dir=out / name,
            progress=not args.no_progress,
        )
        rows.append(
            {
                "model": name,
                "params": sum(p.numel() for p in r.model.parameters()),
                "map50": r.map50,
                "map": r.map,
                "epochs": r.epochs,
                "images_seen": r.images_seen,
                "train_s": r.train_s,
                "wall_s": r.wall_s,
                "images_per_s": r.images_per_s,
                "threads": torch.get_num_threads(),
            }
        )
    df = pd.DataFrame(rows)
    writer = RunWriter(out, "bench_train", threads=torch.get_num_threads())
    writer.save_table(df, "bench_train")
    writer.write_meta(
        minutes=None if args.epochs else args.minutes,
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        data=data.summary(),
    )
    budget = f"{args.epochs}-epoch" if args.epochs else f"{args.minutes:g}-minute"
    table = Table(
        title=f"{budget} training budget, built-in data at {args.imgsz}px ({torch.get_num_threads()} threads)"
    )
    for col in ("model", "params", "mAP50", "mAP50-95", "epochs", "images", "wall s", "img/s"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        table.add_row(
            r["model"],
            f"{r['params']:,}",
            f"{r['map50']:.4f}",
            f"{r['map']:.4f}",
            str(r["epochs"]),
            str(r["images_seen"]),
            f"{r['wall_s']:.0f}",
            f"{r['images_per_s']:.1f}",
        )
    console.print(table)
    console.print(f"results in {out}")
    return df


if __name__ == "__main__":
    main()
