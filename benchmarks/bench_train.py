"""Training benchmarks on the built-in data: throughput against a baseline revision, and accuracy per budget.

``throughput`` (issue 16's CPU acceptance): images/s of one model (yolov5n, 160 px, batch 16, 2 threads by
default) for this checkout AND a baseline git revision (``--baseline``; default the last commit before the
CPU speed work), back to back in one run. The baseline is checked out into a temporary ``git worktree``;
each run is a fresh subprocess (baseline, current, baseline, current, …, ``--rounds`` each) that trains
``--warmup`` images to warm up and then one epoch of ``--images`` images through the real training loop
(``latlab.detection.train.train(..., epochs=1)``), whose own images/s (training loop only, evaluation
excluded) it reports. Prints every run, the ratio of medians current/baseline and the min–max of the
per-round ratios. Run it on an otherwise idle machine; it prints the load average before and after.

    python benchmarks/bench_train.py throughput                      # 5 rounds × 256 images
    python benchmarks/bench_train.py throughput --baseline HEAD~3 --rounds 3 --images 512

``accuracy``: yolov5n and the seed ShuffleNetV2 detector train for the same wall-clock budget
(``--minutes``, default 10) or ``--epochs`` at 160 px on the built-in shapes dataset (nc 10), then the final
EMA weights are scored with pycocotools. Prints mAP50, mAP50-95, wall time and training images/s per model,
and writes ``results/bench_train/<run>/``. The budget is wall time, so a busy machine trains fewer images.

    python benchmarks/bench_train.py accuracy --minutes 10 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

import latlab
from latlab.detection.data import load_dataset
from latlab.detection.train import train
from latlab.runs import RunWriter, new_run_dir

MODELS = ("yolov5n", "yolov5s-shufflenetv2")


def accuracy(argv: list[str]) -> pd.DataFrame:
    """The ``accuracy`` subcommand: mAP per model for one training budget."""
    ap = argparse.ArgumentParser(prog="bench_train.py accuracy", description="mAP per model for one training budget")
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


# The last commit before issue 16's CPU speed work: "today's" training loop for the throughput acceptance.
BASELINE_REV = "0156c0a16a71321309c84eaa19f1f793daaaadd3"
REPO = Path(__file__).resolve().parents[1]
RESULT_TAG = "BENCH_TRAIN_RESULT "
VAL_IMAGES = 16  # train() ends with an evaluation; kept small (it is not part of the images/s)


def throughput_run(argv: list[str]) -> None:
    """One measured run, in its own process, of whichever latlab is first on ``PYTHONPATH``.

    Warms up on its own small dataset (same shapes, so oneDNN's kernels and the allocator are ready), then
    trains one epoch of ``--images`` images and prints the run's images/s on a tagged line."""
    ap = argparse.ArgumentParser(prog="bench_train.py _run")
    ap.add_argument("--model", required=True)
    ap.add_argument("--imgsz", type=int, required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--threads", type=int, required=True)
    ap.add_argument("--images", type=int, required=True)
    ap.add_argument("--warmup", type=int, required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)
    common = dict(imgsz=a.imgsz, batch=a.batch, threads=a.threads, progress=False, seed=0)
    warm = load_dataset("builtin", imgsz=a.imgsz, n_train=a.warmup, n_val=VAL_IMAGES)
    timed = load_dataset("builtin", imgsz=a.imgsz, n_train=a.images, n_val=VAL_IMAGES)
    train(a.model, data=warm, epochs=1, out_dir=Path(a.out) / "warmup", **common)
    r = train(a.model, data=timed, epochs=1, out_dir=Path(a.out) / "timed", **common)
    print(RESULT_TAG + json.dumps({"images_per_s": r.images_per_s, "images": r.images_seen,
                                   "latlab": str(Path(latlab.__file__).resolve().parent)}))


def _one_run(root: Path, a: argparse.Namespace, work: Path) -> float:
    """Start one measuring subprocess importing latlab from ``root``; its images/s."""
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": str(a.threads)}
    out = tempfile.mkdtemp(dir=work)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_run", "--model", a.model, "--imgsz", str(a.imgsz),
           "--batch", str(a.batch), "--threads", str(a.threads), "--images", str(a.images),
           "--warmup", str(a.warmup), "--out", out]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    tagged = [ln for ln in proc.stdout.splitlines() if ln.startswith(RESULT_TAG)]
    if proc.returncode or not tagged:
        raise SystemExit(f"run with latlab from {root} failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    res = json.loads(tagged[-1][len(RESULT_TAG):])
    if Path(res["latlab"]) != (root / "latlab").resolve():
        raise SystemExit(f"run meant for {root} imported latlab from {res['latlab']}")
    return float(res["images_per_s"])


def throughput(argv: list[str]) -> dict[str, list[float]]:
    """The ``throughput`` subcommand: interleaved runs of the baseline revision and this checkout."""
    ap = argparse.ArgumentParser(prog="bench_train.py throughput",
                                 description="training images/s, this checkout vs a baseline revision")
    ap.add_argument("--baseline", default=BASELINE_REV, help="git revision to compare against")
    ap.add_argument("--rounds", type=int, default=5, help="runs of each side (alternating)")
    ap.add_argument("--images", type=int, default=256, help="training images timed per run (one epoch)")
    ap.add_argument("--warmup", type=int, default=32, help="training images per run before the timed epoch")
    ap.add_argument("--model", default="yolov5n")
    ap.add_argument("--imgsz", type=int, default=160)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args(argv)
    if a.rounds < 1 or a.images < a.batch or a.warmup < 1:
        raise SystemExit("--rounds must be >= 1, --images >= --batch and --warmup >= 1")
    rev = subprocess.run(["git", "rev-parse", "--verify", f"{a.baseline}^{{commit}}"], cwd=REPO,
                         capture_output=True, text=True)
    if rev.returncode:
        raise SystemExit(f"--baseline {a.baseline!r}: not a commit of {REPO} ({rev.stderr.strip()})")
    sha = rev.stdout.strip()
    for n in (a.warmup, a.images):  # generate (or reuse) the data once, before anything is timed
        load_dataset("builtin", imgsz=a.imgsz, n_train=n, n_val=VAL_IMAGES)
    print(f"{a.model} {a.imgsz} px, batch {a.batch}, {a.threads} threads, {a.images} images per run "
          f"(+{a.warmup} warm-up); baseline {sha[:10]}; load average {os.getloadavg()[0]:.2f}", flush=True)
    results: dict[str, list[float]] = {"baseline": [], "current": []}
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        work = Path(tmp)
        base_root = work / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", "--quiet", str(base_root), sha], cwd=REPO, check=True)
        try:
            for i in range(a.rounds):
                for side, root in (("baseline", base_root), ("current", REPO)):
                    ips = _one_run(root, a, work)
                    results[side].append(ips)
                    print(f"round {i + 1}/{a.rounds} {side:8s} {ips:8.1f} images/s", flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_root)], cwd=REPO, check=False)
    ratios = [c / b for b, c in zip(results["baseline"], results["current"], strict=True)]
    median_ratio = statistics.median(results["current"]) / statistics.median(results["baseline"])
    print(f"median images/s: baseline {statistics.median(results['baseline']):.1f}, current "
          f"{statistics.median(results['current']):.1f}")
    print(f"current/baseline: {median_ratio:.2f}x (ratio of medians); per round {min(ratios):.2f}x to "
          f"{max(ratios):.2f}x; load average now {os.getloadavg()[0]:.2f}")
    return results


def main(argv: list[str] | None = None) -> object:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = {"throughput": throughput, "accuracy": accuracy, "_run": throughput_run}
    if not args or args[0] not in commands:
        raise SystemExit(f"usage: bench_train.py {{throughput,accuracy}} [options]  (see --help of each)\n\n{__doc__}")
    return commands[args[0]](args[1:])


if __name__ == "__main__":
    main()
