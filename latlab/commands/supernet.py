"""``latlab supernet train|eval``: train a weight-sharing supernet for a search space, score points with it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from latlab.detection.data import load_dataset
from latlab.errors import SearchError
from latlab.ops.builder import load_config
from latlab.search.supernet import SupernetScorer, load_supernet, train_supernet

console = Console()
supernet_app = typer.Typer(help="Weight-sharing supernet: train once, estimate any point's mAP in seconds.",
                           no_args_is_help=True)


def train(
    space: Path = typer.Option(None, "--space", help="Search space YAML (default: the shipped space)."),
    minutes: float = typer.Option(None, "--minutes", help="Training budget in wall-clock minutes."),
    steps: int = typer.Option(None, "--steps", help="Training budget in steps (with or instead of --minutes)."),
    imgsz: int = typer.Option(160, "--imgsz"),
    seed: int = typer.Option(0, "--seed"),
    sampling: str = typer.Option("sandwich", "--sampling", help="sandwich (largest + smallest + random) or uniform."),
    batch: int = typer.Option(16, "--batch"),
    data: str = typer.Option("builtin", "--data", help="'builtin' or a YOLO data YAML / VOC folder."),
    out: Path = typer.Option(Path("supernet.pt"), "--out", help="Checkpoint file (written every 50 steps)."),
    resume: bool = typer.Option(False, "--resume", help="Continue --out (its settings win)."),
    threads: int = typer.Option(None, "--threads"),
) -> None:
    """Train (or continue) the supernet of a search space."""
    r = train_supernet(space, out, minutes=minutes, steps=steps, imgsz=imgsz, data=data, seed=seed,
                       sampling=sampling, batch=batch, resume=resume, threads=threads, progress=True)
    console.print(f"supernet {r.path}: {r.steps} steps in all ({r.new_steps} now, {r.sampling}), "
                  f"mean loss of the last steps {r.loss:.3f}, {r.elapsed_s / 60:.1f} min")


def eval_(
    file: Path = typer.Argument(..., help="Supernet checkpoint."),
    arch: Path = typer.Option(..., "--arch", help="Model YAML of a point of the supernet's space."),
    data: str = typer.Option("builtin", "--data"),
    val_images: int = typer.Option(48, "--val-images"),
) -> None:
    """Estimate one architecture's mAP50-95 with inherited weights (BN recalibrated)."""
    net, _ = load_supernet(file)
    cfg, _src = load_config(arch)
    ds = load_dataset(data, imgsz=net.imgsz)
    if ds.nc != net.nc:
        raise SearchError(f"{file}: supernet has nc={net.nc} but the data has nc={ds.nc}")
    m = SupernetScorer(net, ds, val_images=val_images).score(cfg)
    console.print(json.dumps({"map": m["map"], "map50": m["map50"]}))


def register(app: typer.Typer) -> None:
    supernet_app.command("train")(train)
    supernet_app.command("eval")(eval_)
    app.add_typer(supernet_app, name="supernet")
