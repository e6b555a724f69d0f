"""``latlab zoo``, ``latlab blocks`` and ``latlab build``: list and build models."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from latlab.ops.builder import build_model
from latlab.ops.registry import list_blocks
from latlab.ops.zoo import list_zoo
from latlab.profiling.summary import summarize
from latlab.validate import image_size

console = Console()


def zoo(json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table.")) -> None:
    """List the shipped model configs."""
    entries = list_zoo()
    if json_out:
        print(json.dumps([{"name": e.name, "task": e.task, "family": e.family, "description": e.description,
                           "source": e.source, "path": str(e.path)} for e in entries], indent=2))
        return
    table = Table(title="latlab model zoo")
    for col in ("name", "task", "family", "description", "source"):
        table.add_column(col)
    for e in entries:
        table.add_row(e.name, e.task, e.family, e.description, e.source)
    console.print(table)


def blocks(family: str = typer.Option(None, help="Only this family (yolo, shufflenet, ghost, ...).")) -> None:
    """List the registered blocks a YAML may name."""
    table = Table(title="registered blocks")
    for col in ("name", "aliases", "family", "kind", "what"):
        table.add_column(col)
    for s in list_blocks(family):
        table.add_row(s.name, ", ".join(s.aliases), s.family, s.kind, escape(s.doc))
    console.print(table)


def build(
    config: str = typer.Argument(..., help="Zoo name or path to a model YAML."),
    nc: int = typer.Option(None, help="Override the number of classes."),
    imgsz: int = typer.Option(640, help="Square input size for the FLOP count."),
    depth_multiple: float = typer.Option(None, help="Override depth_multiple."),
    width_multiple: float = typer.Option(None, help="Override width_multiple."),
    ch: int = typer.Option(None, help="Input channels."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Build a model from YAML and print its per-layer table and totals (YOLOv5 style)."""
    image_size(imgsz, "--imgsz")
    model = build_model(config, nc=nc, depth_multiple=depth_multiple, width_multiple=width_multiple, ch=ch)
    summary = summarize(model, imgsz, name=config)
    if json_out:
        print(json.dumps(summary.to_dict(), indent=2, default=str))
        return
    table = Table(title=f"{config} ({summary.task})")
    for col in ("index", "from", "n", "params", "module", "args"):
        table.add_column(col, justify="right" if col in ("index", "n", "params") else "left")
    for r in summary.layers.to_dict(orient="records"):
        table.add_row(str(r["index"]), str(r["from"]), str(r["n"]), f"{r['params']:,}", r["module"],
                      escape(str(r["args"])))
    console.print(table)
    console.print(
        f"{config} summary: {len(summary.layers)} layers, {summary.params:,} parameters, "
        f"{summary.madds / 1e9:.3f} G multiply-adds, {summary.mac_bytes / 2**20:.1f} MiB memory access at "
        f"{imgsz}x{imgsz}, "
        f"{summary.yolo_gflops:.1f} GFLOPs in YOLOv5's convention (2 x thop count, BN included)"
    )


def register(app: typer.Typer) -> None:
    app.command("zoo")(zoo)
    app.command("blocks")(blocks)
    app.command("build")(build)
