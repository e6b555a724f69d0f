"""``latlab profile``: end-to-end latency of a model, optionally per layer and per op category, the
pipeline a user's stopwatch sees (letterbox + model + NMS), a batch-size sweep and peak memory;
``latlab compare``: two models timed interleaved, their latency ratio with a bootstrap CI.

Parse arguments → ``latlab.profiling.layerwise.profile_model`` / ``compare_models`` (and
``latlab.detection.pipeline.profile_pipeline``, ``latlab.profiling.throughput.batch_sweep``,
``latlab.profiling.memory.peak_memory``) → rich tables (or JSON) → a run folder with CSV tables and
``meta.json`` (default ``results/profile/<timestamp>/``, ``results/compare/<timestamp>/``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from latlab.commands.options import BACKEND_OPT, DEVICE_OPT
from latlab.detection.pipeline import (
    DEPLOY_CONF,
    VAL_CONF,
    VAL_IOU,
    PipelineProfile,
    check_threshold,
    profile_pipeline,
)
from latlab.ops.sources import MODEL_FORMS_HELP
from latlab.profiling.compare import Comparison
from latlab.profiling.layerwise import ProfileResult, compare_models, profile_model
from latlab.profiling.memory import MemoryReport, peak_memory
from latlab.profiling.throughput import ThroughputSweep, batch_sweep, parse_batches
from latlab.profiling.timer import DEFAULT_ESTIMATOR, ESTIMATORS, Measurement
from latlab.runs import RunWriter, new_run_dir
from latlab.validate import image_size, output_dir, positive_float, positive_int

console = Console()
# options shared by `profile` and `compare` (one definition, one help text); --backend/--device: options.py
THREADS_OPT = typer.Option(1, help="Intra-op threads (torch.set_num_threads / ORT intra_op).")
ESTIMATOR_OPT = typer.Option(DEFAULT_ESTIMATOR, help=f"One of {', '.join(ESTIMATORS)}.")
BUDGET_OPT = typer.Option(10.0, help="Seconds of timing for the interleaved rounds.")
CHANNELS_LAST_OPT = typer.Option(False, "--channels-last", help="channels_last memory format.")
JSON_OPT = typer.Option(False, "--json", help="Print JSON instead of tables.")


def _check_timing_options(imgsz: int | None, threads: int, budget: float, out: Path | None) -> None:
    """The options ``profile`` and ``compare`` share, checked before any model is built or timed."""
    if imgsz is not None:
        image_size(imgsz, "--imgsz")
    positive_int(threads, "--threads")
    positive_float(budget, "--budget")
    if out is not None:
        output_dir(out, "--out")


def _ms(v: float) -> str:
    return f"{v:.3f}"


def _measurement_table(title: str, rows: dict[str, Measurement]) -> Table:
    """One row per named measurement: estimate with its CI, median, p90, IQR, cv, n, speed factor."""
    m0 = next(iter(rows.values()))
    t = Table(title=title)
    t.add_column("model", justify="left")
    for col in (f"{m0.estimator} ms", "95% CI", "median ms", "p90 ms", "IQR ms", "cv", "n", "speed factor"):
        t.add_column(col, justify="right")
    for name, m in rows.items():
        t.add_row(name, _ms(m.estimate_ms), f"{_ms(m.ci_low_ms)}-{_ms(m.ci_high_ms)}", _ms(m.median_ms),
                  _ms(m.p90_ms), _ms(m.iqr_ms), f"{m.cv:.2f}", str(m.n), f"{m.speed_factor:.3f}")
    return t


def _latency_table(r: ProfileResult) -> Table:
    m = r.end_to_end
    return _measurement_table(f"{r.name} @ {r.imgsz}×{r.imgsz}: {m.backend} / {m.device}, {m.threads} thread(s)",
                              {r.name: m})


def _layers_table(r: ProfileResult) -> Table:
    lt = r.layers
    assert lt is not None
    t = Table(title=f"per layer ({lt.estimator}, {lt.rounds} interleaved rounds)")
    for col in ("layer", "type", "in_shapes", f"{lt.estimator} ms", "median ms", "share", "of e2e"):
        t.add_column(col, justify="left" if col in ("type", "in_shapes") else "right")
    for row in lt.table.to_dict(orient="records"):
        t.add_row(str(row["layer"]), row["type"], row["in_shapes"], _ms(row["estimate_ms"]), _ms(row["median_ms"]),
                  f"{row['share']:.1%}", f"{row['of_e2e']:.1%}")
    return t


def _ops_table(r: ProfileResult) -> Table:
    ob = r.ops
    assert ob is not None
    t = Table(title=f"torch.profiler per op category (median over {ob.iters} inferences)")
    for col in ("category", "Fig. 2 group", "ms", "share", "calls", "ops"):
        t.add_column(col, justify="right" if col in ("ms", "share", "calls") else "left")
    for row in ob.by_category.to_dict(orient="records"):
        t.add_row(row["category"], row["group"], _ms(row["time_ms"]), f"{row['share']:.1%}",
                  f"{row['calls']:g}", row["ops"])
    return t


def _pipeline_table(p: PipelineProfile) -> Table:
    """One row per stage and the end-to-end row: estimate with CI, median, IQR, share of the stages, of e2e
    (what each stage does is printed below it)."""
    e2e = p.table.iloc[-1]
    t = Table(title=f"pipeline of one {p.frame_hw[1]}×{p.frame_hw[0]} frame @ {p.imgsz}×{p.imgsz}: "
                    f"{e2e['backend']} / {e2e['device']}, {e2e['threads']} thread(s), wall clock")
    for col in ("stage", f"{p.estimator} ms", "95% CI", "median ms", "IQR ms", "share", "of e2e"):
        t.add_column(col, justify="left" if col == "stage" else "right")
    for row in p.table.to_dict(orient="records"):
        share = "" if pd.isna(row["share"]) else f"{row['share']:.1%}"
        t.add_row(row["stage"], _ms(row["estimate_ms"]), f"{_ms(row['ci_low_ms'])}-{_ms(row['ci_high_ms'])}",
                  _ms(row["median_ms"]), _ms(row["iqr_ms"]), share, f"{row['of_e2e']:.1%}")
    return t


def _throughput_table(s: ThroughputSweep) -> Table:
    """One row per batch size: latency per batch (CI), per image, images/s (CI)."""
    r0 = s.table.iloc[0]
    t = Table(title=f"throughput @ {s.imgsz}×{s.imgsz}: {r0['backend']} / {r0['device']}, {r0['threads']} "
                    f"thread(s), wall clock")
    for col in ("batch", f"{s.estimator} ms / batch", "95% CI", "median ms", "IQR ms", "ms / image", "images/s",
                "images/s 95% CI"):
        t.add_column(col, justify="right")
    for row in s.table.to_dict(orient="records"):
        t.add_row(str(row["batch"]), _ms(row["estimate_ms"]), f"{_ms(row['ci_low_ms'])}-{_ms(row['ci_high_ms'])}",
                  _ms(row["median_ms"]), _ms(row["iqr_ms"]), _ms(row["per_image_ms"]), f"{row['images_s']:.1f}",
                  f"{row['images_s_low']:.1f}-{row['images_s_high']:.1f}")
    return t


def _memory_table(m: MemoryReport) -> Table:
    """Baseline, peak, growth and retained RSS (MiB), CUDA max allocated where measured."""
    row = m.table.iloc[0]
    t = Table(title=f"peak memory: {row['backend']} / {row['device']}, batch {row['batch']}, {row['iters']} "
                    f"inferences ({row['method']})")
    cols = ["model", "RSS before MiB", "RSS peak MiB", "growth MiB", "retained MiB"]
    cuda = not pd.isna(row["cuda_max_allocated_mb"])
    if cuda:
        cols += ["CUDA max allocated MiB", "CUDA growth MiB"]
    for col in cols:
        t.add_column(col, justify="left" if col == "model" else "right")
    cells = [str(row["model"])] + [f"{row[c]:.1f}" for c in ("rss_baseline_mb", "rss_peak_mb", "rss_growth_mb",
                                                             "rss_retained_mb")]
    if cuda:
        cells += [f"{row['cuda_max_allocated_mb']:.1f}", f"{row['cuda_growth_mb']:.1f}"]
    t.add_row(*cells)
    return t


def profile(
    config: str = typer.Argument(..., help=f"The model: {MODEL_FORMS_HELP} (timed under onnxruntime)."),
    imgsz: int = typer.Option(None, help="Square input size (default: the config's, else 640 / 224; an ONNX "
                                         "graph's fixed size)."),
    device: str = DEVICE_OPT,
    backend: str = BACKEND_OPT,
    threads: int = THREADS_OPT,
    per_layer: bool = typer.Option(False, "--per-layer", help="Time every YAML layer on its real input."),
    ops: bool = typer.Option(False, "--ops", help="torch.profiler breakdown by op category."),
    estimator: str = ESTIMATOR_OPT,
    budget: float = BUDGET_OPT,
    channels_last: bool = CHANNELS_LAST_OPT,
    pipeline: bool = typer.Option(False, "--pipeline", help="Time letterbox of a 1280×720 frame + model + NMS "
                                                            "per stage, with each stage's share (wall clock)."),
    conf: float = typer.Option(VAL_CONF, help=f"--pipeline: NMS confidence threshold (default latlab val's "
                                              f"{VAL_CONF:g}, IoU {VAL_IOU:g}: the most boxes; deployed "
                                              f"detectors typically use {DEPLOY_CONF:g})."),
    batch: str = typer.Option(None, "--batch", help="Throughput sweep over these batch sizes, e.g. 1,2,4,8: "
                                                    "latency per batch and per image, images/s (wall clock)."),
    memory: bool = typer.Option(False, "--memory", help="Peak memory: RSS growth while preparing and running "
                                                        "the model (in this process), CUDA max allocated."),
    json_out: bool = JSON_OPT,
    out: Path = typer.Option(None, help="Run folder to write (default results/profile/<timestamp>/)."),
) -> None:
    """Measure a model's latency (estimator, CI, spread) and optionally where the time goes."""
    _check_timing_options(imgsz, threads, budget, out)
    batches = parse_batches(batch) if batch is not None else None
    check_threshold(conf, "--conf")
    sweep = pipe = mem = None
    with warnings.catch_warnings():  # the busy-machine warning is printed below with the others
        warnings.filterwarnings("ignore", message="machine is busy", category=RuntimeWarning)
        result = profile_model(config, imgsz=imgsz, device=device, backend=backend, threads=threads,
                               per_layer=per_layer, ops=ops, estimator=estimator, budget_s=budget,
                               channels_last=channels_last, progress=not json_out)
        common = {"imgsz": imgsz, "device": device, "backend": backend, "threads": threads,
                  "channels_last": channels_last}
        if pipeline:
            pipe = profile_pipeline(config, conf_thres=conf, estimator=estimator, budget_s=budget,
                                    progress=not json_out, **common)
        if batches is not None:
            sweep = batch_sweep(config, batches, estimator=estimator, budget_s=budget, progress=not json_out,
                                **common)
        if memory:
            mem = peak_memory(config, **common)
    tables = dict(result.tables())
    meta = result.meta()
    for name, part in (("pipeline", pipe), ("throughput", sweep), ("memory", mem)):
        if part is not None:
            tables[name] = part.table
            meta[name] = part.meta()
    run_dir = out if out is not None else new_run_dir("profile")
    writer = RunWriter(Path(run_dir), "profile", threads=threads, device=device)
    for name, df in tables.items():
        writer.save_table(df, name)
    writer.write_meta(**meta)
    if json_out:
        payload = {"meta": meta, "run_dir": str(run_dir),
                   **{name: df.to_dict(orient="records") for name, df in tables.items()}}
        print(json.dumps(payload, indent=2, default=str))
        return
    console.print(_latency_table(result))
    if result.layers is not None:
        console.print(_layers_table(result))
        console.print(result.layers.summary())
    if result.ops is not None:
        console.print(_ops_table(result))
        console.print(result.ops.summary())
    if pipe is not None:
        console.print(_pipeline_table(pipe))
        for stage, what in zip(pipe.table["stage"], pipe.table["what"], strict=True):
            console.print(f"[dim]{stage}: {what}[/]")
        console.print(pipe.summary())
    if sweep is not None:
        console.print(_throughput_table(sweep))
    if mem is not None:
        console.print(_memory_table(mem))
    parts_warnings = [w for part in (pipe, sweep) if part is not None for w in part.warnings]
    for w in dict.fromkeys(result.warnings + parts_warnings):
        console.print(f"[yellow]warning:[/] {w}")
    for note in mem.notes if mem is not None else []:
        console.print(f"note: {note}")
    console.print(f"saved to {run_dir}")


def compare_cmd(
    config_a: str = typer.Argument(..., help=f"Model A: {MODEL_FORMS_HELP}."),
    config_b: str = typer.Argument(..., help="Model B, in any of the same forms (with an ONNX file both are "
                                             "timed under onnxruntime)."),
    imgsz: int = typer.Option(None, help="Square input size for both (default: model A's default)."),
    device: str = DEVICE_OPT,
    backend: str = BACKEND_OPT,
    threads: int = THREADS_OPT,
    estimator: str = ESTIMATOR_OPT,
    budget: float = BUDGET_OPT,
    channels_last: bool = CHANNELS_LAST_OPT,
    json_out: bool = JSON_OPT,
    out: Path = typer.Option(None, help="Run folder to write (default results/compare/<timestamp>/)."),
) -> None:
    """Time two models interleaved in one process: latency ratio A/B with a bootstrap CI. Use this to
    compare models: separate processes on a shared machine differ by several per cent."""
    _check_timing_options(imgsz, threads, budget, out)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="machine is busy", category=RuntimeWarning)
        c: Comparison = compare_models(config_a, config_b, imgsz=imgsz, device=device, backend=backend,
                                       threads=threads, estimator=estimator, budget_s=budget,
                                       channels_last=channels_last, progress=not json_out)

    run_dir = out if out is not None else new_run_dir("compare")
    writer = RunWriter(Path(run_dir), "compare", threads=threads, device=device)
    comparison = pd.DataFrame([c.to_row()])
    models = pd.DataFrame([{"model": n, **m.to_row()} for n, m in ((c.name_a, c.a), (c.name_b, c.b))])
    writer.save_table(comparison, "comparison")
    writer.save_table(models, "models")
    writer.write_meta(model_a=config_a, model_b=config_b, imgsz=imgsz, estimator=estimator, budget_s=budget,
                      backend=backend, channels_last=channels_last)
    if json_out:
        print(json.dumps({"run_dir": str(run_dir), "comparison": comparison.to_dict(orient="records")[0],
                          "models": models.to_dict(orient="records")}, indent=2, default=str))
        return
    console.print(_measurement_table(f"{c.a.backend} / {c.a.device}, {c.a.threads} thread(s), interleaved",
                                     {c.name_a: c.a, c.name_b: c.b}))
    console.print(c.summary())
    for w in dict.fromkeys(c.a.warnings + c.b.warnings):
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"saved to {run_dir}")


def register(app: typer.Typer) -> None:
    app.command("profile")(profile)
    app.command("compare")(compare_cmd)
