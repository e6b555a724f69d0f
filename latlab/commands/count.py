"""``latlab count``: per-op params, multiply-adds, FLOPs and memory access bytes of a model.

Parses arguments, resolves the model (:func:`latlab.ops.sources.resolve_model`), makes one library call
(:func:`latlab.profiling.counter.count`, :func:`latlab.profiling.crosscheck.crosscheck` with
``--counter fvcore|thop|all``, or :func:`latlab.profiling.onnx_count.count_onnx` for an ONNX file), prints
rich tables and optionally saves a run folder.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from latlab.errors import ConfigError
from latlab.ops.sources import MODEL_FORMS_HELP, OnnxGraph, resolve_model
from latlab.profiling.counter import SUM_COLUMNS, CountResult, count
from latlab.profiling.crosscheck import crosscheck
from latlab.profiling.onnx_count import MADD_OPS, ONNX_SUM_COLUMNS, OnnxCount, count_onnx
from latlab.runs import RunWriter, new_run_dir

console = Console()

BY_CHOICES = ("layer", "op", "category", "module")
ONNX_BY_CHOICES = ("layer", "op")
DEFAULT_IMGSZ = 640
COUNTER_CHOICES = ("latlab", "fvcore", "thop", "all")
DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}
# column -> (header, divisor, format)
_UNITS = {"params": ("params", 1, "{:,.0f}"), "madds": ("madds (M)", 1e6, "{:,.2f}"),
          "flops": ("flops (M)", 1e6, "{:,.2f}"), "mac_bytes": ("mac (MB)", 1e6, "{:,.2f}"),
          "act_elems": ("act elems (K)", 1e3, "{:,.1f}")}


def grouped(result: CountResult, by: str) -> pd.DataFrame:
    """The ``--by`` view of a count."""
    return {"layer": result.by_layer, "op": result.by_op, "category": result.by_category,
            "module": result.by_module}[by]()


def totals_line(name: str, result: CountResult) -> str:
    """One line of totals with the units spelled out."""
    t = result.totals
    size = "x".join(map(str, result.input_shape))
    return (f"{name} @ {size} ({result.dtype}, {'meta' if result.meta else 'real'} tensors): "
            f"{t['params']:,} params; {t['madds'] / 1e9:.3f} G multiply-adds; {t['flops'] / 1e9:.3f} G flops "
            f"(2 × madds + element-wise work); {t['mac_bytes'] / 1e6:.1f} MB memory access; "
            f"{t['act_elems'] / 1e6:.2f} M activation elements; {_gflops(result.yolo_gflops)} GFLOPs in "
            "YOLOv5's convention (model_info: 2 × thop)")


def _gflops(x: float) -> str:
    return f"{x:.1f}" if x >= 10 else f"{x:.3f}"


def _table(df: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    extra = [c for c in ("n_ops", "flops_pct", "mac_bytes_pct") if c in df.columns]
    keys = [c for c in df.columns if c not in SUM_COLUMNS and c not in extra]
    for c in keys:
        table.add_column(c, justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left")
    for c in SUM_COLUMNS:
        table.add_column(_UNITS[c][0], justify="right")
    for c in extra:
        table.add_column(c.replace("_pct", " %"), justify="right")
    for row in df.to_dict(orient="records"):
        cells = [escape(str(row[c])) for c in keys]
        cells += [_UNITS[c][2].format(row[c] / _UNITS[c][1]) for c in SUM_COLUMNS]
        cells += [f"{row[c]:.1f}" if isinstance(row[c], float) else str(row[c]) for c in extra]
        table.add_row(*cells)
    return table


def _crosscheck_table(df: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    for c in ("counter", "total (G)", "unit", "ratio to latlab madds"):
        table.add_column(c, justify="right" if c.startswith(("total", "ratio")) else "left")
    for r in df.to_dict(orient="records"):
        table.add_row(r["counter"], f"{r['total'] / 1e9:.4f}", r["unit"], f"{r['ratio_to_latlab_madds']:.4f}")
    return table


def _onnx_table(df: pd.DataFrame, title: str) -> Table:
    table = Table(title=title)
    keys = [c for c in df.columns if c not in ONNX_SUM_COLUMNS]
    for c in keys:
        table.add_column(c, justify="right" if pd.api.types.is_numeric_dtype(df[c]) else "left")
    for c in ONNX_SUM_COLUMNS:
        table.add_column(_UNITS[c][0], justify="right")
    for row in df.to_dict(orient="records"):
        cells = [escape(str(row[c])) for c in keys]
        cells += ["?" if pd.isna(row[c]) else _UNITS[c][2].format(row[c] / _UNITS[c][1]) for c in ONNX_SUM_COLUMNS]
        table.add_row(*cells)
    return table


def onnx_totals_line(name: str, result: OnnxCount) -> str:
    """One line of an ONNX graph's totals, naming the columns a graph does not give."""
    t = result.totals
    size = "x".join(map(str, result.input_shape))
    return (f"{name} @ {size} (ONNX graph): {t['params']:,} params (initializers); {t['madds'] / 1e9:.3f} G "
            f"multiply-adds ({', '.join(MADD_OPS)} from inferred shapes); not available from an ONNX graph: "
            f"{', '.join(result.unavailable)}")


def _count_onnx_cmd(config: str, graph: OnnxGraph, imgsz: int | None, by: str, counter: str, json_out: bool,
                    out: Path | None, save: bool) -> None:
    if counter != "latlab":
        raise ConfigError(f"'{config}' is an ONNX graph: --counter {counter} needs a PyTorch model")
    if by not in ONNX_BY_CHOICES:
        raise ConfigError(f"'{config}' is an ONNX graph: --by must be one of {', '.join(ONNX_BY_CHOICES)}, "
                          f"got {by!r}")
    result = count_onnx(graph, imgsz)
    view = result.by_layer() if by == "layer" else result.by_op()
    if json_out:
        print(json.dumps({"model": config, "form": "onnx", "input_shape": list(result.input_shape),
                          "totals": result.totals, "unavailable": list(result.unavailable), "notes": result.notes,
                          f"by_{by}": view.to_dict(orient="records")}, indent=2, default=str))
    else:
        console.print(_onnx_table(view, f"{config}: counts by {by}"))
        for note in result.notes:
            console.print(f"[yellow]note:[/] {escape(note)}")
        console.print(escape(onnx_totals_line(config, result)))
    if out is not None or save:
        writer = RunWriter(Path(out) if out is not None else new_run_dir("count"), "count")
        writer.save_table(result.ops, "ops")
        writer.save_table(view, f"by_{by}")
        writer.write_meta(model=config, form="onnx", input_shape=list(result.input_shape), totals=result.totals,
                          unavailable=list(result.unavailable), notes=result.notes)
        if not json_out:
            console.print(f"saved to {writer.path}")


def count_cmd(
    config: str = typer.Argument(..., help=f"The model: {MODEL_FORMS_HELP}."),
    imgsz: int = typer.Option(None, help="Square input size (a multiple of the model's max stride; default 640, "
                                         "for an ONNX graph its fixed input size)."),
    by: str = typer.Option("layer", help="Group rows by: layer, op, category or module (ONNX: layer or op)."),
    counter: str = typer.Option("latlab", help="latlab, or fvcore/thop/all for a cross-check table."),
    dtype: str = typer.Option("float32", help="Element type for mac_bytes: float32, float16, bfloat16."),
    real: bool = typer.Option(False, "--real", help="Run real tensors instead of meta tensors."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    out: Path = typer.Option(None, "--out", help="Write ops/grouped/cross-check CSVs and meta.json here."),
    save: bool = typer.Option(False, "--save", help="Write a run folder under results/count/."),
) -> None:
    """Count params, multiply-adds, FLOPs and memory access bytes per op, layer, category or module."""
    if by not in BY_CHOICES:
        raise ConfigError(f"--by must be one of {', '.join(BY_CHOICES)}, got {by!r}")
    if counter not in COUNTER_CHOICES:
        raise ConfigError(f"--counter must be one of {', '.join(COUNTER_CHOICES)}, got {counter!r}")
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    source = resolve_model(config)
    if isinstance(source.model, OnnxGraph):
        _count_onnx_cmd(config, source.model, imgsz, by, counter, json_out, out, save)
        return
    imgsz = imgsz or DEFAULT_IMGSZ
    result = count(source.model, imgsz, meta=not real, dtype=DTYPES[dtype])
    check = None
    if counter != "latlab":
        counters = ("fvcore", "thop") if counter == "all" else (counter,)
        check = crosscheck(source.model, imgsz, counters=counters, result=result)
    view = grouped(result, by)
    if json_out:
        payload = {"model": config, "imgsz": imgsz, "input_shape": list(result.input_shape),
                   "dtype": result.dtype, "meta": result.meta, "totals": result.totals,
                   "yolo_gflops": result.yolo_gflops, f"by_{by}": view.to_dict(orient="records")}
        if check is not None:
            payload["crosscheck"] = check.to_dict(orient="records")
        print(json.dumps(payload, indent=2, default=str))
    else:
        console.print(_table(view, f"{config} @ {imgsz}: counts by {by}"))
        if check is not None:
            console.print(_crosscheck_table(check, f"{config} @ {imgsz}: counters compared"))
            for r in check.itertuples():
                console.print(f"[bold]{escape(r.counter)}[/]: {escape(r.reason)}")
        console.print(totals_line(config, result))
    if out is not None or save:
        writer = RunWriter(Path(out) if out is not None else new_run_dir("count"), "count")
        writer.save_table(result.ops, "ops")
        writer.save_table(view, f"by_{by}")
        if check is not None:
            writer.save_table(check, "crosscheck")
        writer.write_meta(model=config, imgsz=imgsz, input_shape=list(result.input_shape), dtype=result.dtype,
                          meta_tensors=result.meta, totals=result.totals, yolo_gflops=result.yolo_gflops)
        if not json_out:
            console.print(f"saved to {writer.path}")


def register(app: typer.Typer) -> None:
    app.command("count")(count_cmd)
