"""``latlab data make``, ``latlab train`` and ``latlab val``: the detection accuracy harness."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from latlab.commands.options import backend_option
from latlab.detection.converted import EAGER, evaluate_checkpoint_backend
from latlab.detection.data import load_dataset, make_dataset
from latlab.detection.device import AMP_MODES
from latlab.detection.evaluate import evaluate_checkpoint
from latlab.detection.synthetic import DEFAULT_PRESET, PRESETS
from latlab.detection.train import train as train_fn
from latlab.validate import MAX_DATA_GB, image_size, memory_estimate, positive_float, positive_int

console = Console()
data_app = typer.Typer(help="Detection datasets.", no_args_is_help=True)


@data_app.command("make")
def data_make(
    imgsz: int = typer.Option(160, help="Image size of the built-in shapes dataset."),
    n_train: int = typer.Option(2000, help="Training images."),
    n_val: int = typer.Option(400, help="Validation images."),
    seed: int = typer.Option(0, help="Generation seed."),
    root: Path = typer.Option(None, help="Cache root (default results/data)."),
    force: bool = typer.Option(False, help="Regenerate even if cached."),
    preset: str = typer.Option(DEFAULT_PRESET, help=f"Generator preset: {', '.join(PRESETS)}."),
) -> None:
    """Generate (or reuse) the built-in synthetic detection dataset and print its summary."""
    image_size(imgsz, "--imgsz")
    positive_int(n_train, "--n-train", limit=None)
    positive_int(n_val, "--n-val", limit=None)
    memory_estimate((n_train + n_val) * imgsz * imgsz * 3, f"--n-train {n_train} + --n-val {n_val} images of "
                    f"{imgsz}×{imgsz}×3 bytes", limit=MAX_DATA_GB)
    folder = make_dataset(imgsz=imgsz, n_train=n_train, n_val=n_val, seed=seed, root=root, force=force,
                          preset=preset)
    summary = load_dataset(folder).summary()
    console.print(f"[bold]{folder}[/]")
    console.print(json.dumps(summary, indent=2), highlight=False)


TRAIN_DEVICE_HELP = "cpu, cuda, cuda:N or mps: where the model trains or evaluates."
AMP_HELP = (f"Mixed precision: {', '.join(AMP_MODES)} (auto: fp16 with a GradScaler on CUDA, off on CPU/MPS; "
            "bf16 on the CPU is opt-in).")


def _metrics_table(title: str, metrics: dict) -> Table:
    table = Table(title=title)
    for col in ("class", "targets", "AP50", "AP50-95"):
        table.add_column(col, justify="right" if col != "class" else "left")
    for row in metrics["per_class"].itertuples():
        table.add_row(str(row.name), str(row.n_targets), f"{row.ap50:.4f}", f"{row.ap:.4f}")
    table.add_row("all", str(metrics.get("n_targets", "")), f"{metrics['map50']:.4f}", f"{metrics['map']:.4f}",
                  style="bold")
    return table


def train(
    config: str = typer.Argument(..., help="Zoo name or model YAML path."),
    data: str = typer.Option("builtin", help="'builtin', a YOLO data YAML, a COCO or a VOC folder."),
    epochs: int = typer.Option(None, help="Epochs to train (default 10 unless --minutes)."),
    minutes: float = typer.Option(None, help="Train for this many minutes of wall time instead of epochs."),
    imgsz: int = typer.Option(160, help="Square input size."),
    batch: int = typer.Option(16, help="Batch size."),
    resume: bool = typer.Option(False, help="Continue results/train/NAME from its last checkpoint."),
    name: str = typer.Option(None, help="Run name (folder under results/train/); an existing one is refused "
                                        "unless --resume or --force."),
    force: bool = typer.Option(False, "--force", help="Overwrite the run called --name (its old files are deleted)."),
    seed: int = typer.Option(0, help="Random seed."),
    optimizer: str = typer.Option("AdamW", help="AdamW or SGD."),
    threads: int = typer.Option(None, help="torch threads (default: torch's choice)."),
    workers: int = typer.Option(0, help="DataLoader processes that decode the training images (0: none)."),
    device: str = typer.Option("cpu", "--device", help=TRAIN_DEVICE_HELP),
    amp: str = typer.Option("auto", "--amp", help=AMP_HELP),
) -> None:
    """Train a detector and write metrics.csv, final.json and checkpoints to results/train/NAME/."""
    image_size(imgsz, "--imgsz")
    positive_int(batch, "--batch")
    if epochs is not None:
        positive_int(epochs, "--epochs")
    if minutes is not None:
        positive_float(minutes, "--minutes")
    if threads is not None:
        positive_int(threads, "--threads")
    result = train_fn(config, data=data, epochs=epochs, minutes=minutes, imgsz=imgsz, batch=batch, resume=resume,
                      name=name, force=force, seed=seed, optimizer=optimizer, threads=threads, workers=workers,
                      device=device, amp=amp)
    console.print(_metrics_table(f"{config}: {result.epochs} epochs, {result.wall_s:.0f} s "
                                 f"({result.images_per_s:.1f} img/s training)", result.metrics))
    console.print(f"results in [bold]{result.run_dir}[/]")


def val(
    config: str = typer.Argument(..., help="Zoo name or model YAML path."),
    weights: Path = typer.Option(..., help="Checkpoint written by latlab train (last.pt / best.pt)."),
    data: str = typer.Option("builtin", help="'builtin', a YOLO data YAML, a COCO or a VOC folder."),
    imgsz: int = typer.Option(160, help="Square input size."),
    batch: int = typer.Option(32, help="Batch size (the converted model's fixed batch with --backend)."),
    conf_thres: float = typer.Option(0.001, help="Confidence threshold."),
    iou_thres: float = typer.Option(0.6, help="NMS IoU threshold."),
    device: str = typer.Option("cpu", "--device", help=TRAIN_DEVICE_HELP),
    amp: str = typer.Option("auto", "--amp", help=AMP_HELP + " Eager torch only."),
    backend: str = backend_option(EAGER, "Run the detector through this backend (decode, NMS and scoring stay "
                                         "in torch; INT8 ones calibrate on the data's training split)."),
    threads: int = typer.Option(1, "--threads", help="Intra-op threads of the backend."),
) -> None:
    """Evaluate a checkpoint (written on any device): mAP50, mAP50-95 and per-class AP (pycocotools), in eager
    torch or converted by --backend (ONNX Runtime, its INT8 quantization, OpenVINO, ...)."""
    image_size(imgsz, "--imgsz")
    positive_int(batch, "--batch")
    positive_int(threads, "--threads")
    if backend == EAGER:
        metrics = evaluate_checkpoint(config, weights, data=data, imgsz=imgsz, batch=batch, conf_thres=conf_thres,
                                      iou_thres=iou_thres, device=device, amp=amp)
        where = f"torch {torch.__version__}, {device}, amp {amp}"
    else:
        metrics = evaluate_checkpoint_backend(config, weights, backend, data=data, imgsz=imgsz, batch=batch,
                                              threads=threads, device=device, conf_thres=conf_thres,
                                              iou_thres=iou_thres)
        where = f"{backend} {metrics['precision']}, {metrics['runtime']}, {device}, {threads} thread(s)"
        if metrics["calibration"]:
            where += f", calibrated on {metrics['calibration']}"
    console.print(_metrics_table(f"{config} @ {weights}", metrics))
    console.print(f"backend: {escape(where)}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
    app.command("train")(train)
    app.command("val")(val)
