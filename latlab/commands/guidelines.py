"""``latlab guidelines`` (ShuffleNet V2's G1-G4 micro-benchmarks beside the paper) and ``latlab lint``.

Each command parses its arguments, makes one library call (``latlab.guidelines.run.run_guidelines`` /
``latlab.guidelines.lint.lint_model``), prints rich tables (or JSON) and writes a run folder. With several
``--backend`` names, ``guidelines`` prints each backend's tables and then the verdicts side by side.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from latlab.commands.options import DEVICE_OPT, backend_option, device_option
from latlab.guidelines.lint import LintResult, lint_model
from latlab.guidelines.paper import CITATION, TABLES
from latlab.guidelines.run import GuidelineResults, run_guidelines
from latlab.guidelines.verdict import HOLDS, NOT_MEASURED, PARTLY
from latlab.ops.sources import PYTORCH_FORMS
from latlab.profiling.timer import DEFAULT_ESTIMATOR, ESTIMATORS
from latlab.runs import RunWriter, new_run_dir

console = Console()
VERDICT_STYLE = {HOLDS: "bold green", PARTLY: "bold yellow", NOT_MEASURED: "dim"}
READINGS = ("Readings that are ours (meta.json 'notes'): ×2/×4 = the ×1 channels scaled; G3 parallel = k branches "
            "c→c/k concatenated; G4 c = the unit's channels (bottleneck c/4); plain convs without BN or bias; "
            "GPU batch 1. rel/paper = latency / baseline row's (> 1: slower); * = not buildable as printed.")


def _ms(v: float) -> str:
    if math.isnan(v):
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _row_label(label: str) -> str:
    """Table 3's row names shortened for an 80-column terminal (``2-fragment-parallel`` → ``2-parallel``)."""
    return label.replace("1-fragment", "1-frag").replace("-fragment-", "-")


def _guideline_table(res: GuidelineResults, g: str, width: int, backend: str) -> Table:
    df = res.tables[g]
    df = df[(df["width"] == width) & (df["backend"] == backend)]
    first = df.iloc[0]
    paper = TABLES[g]
    unit = "img/s" if first["unit"] == "images/s" else "batch/s"
    paper_unit = "img/s" if first["paper_unit"] == "images/s" else "batch/s"
    t = Table(title=f"{g} (Table {paper.table}) ×{width}: {paper.title}\n{first['backend']}/{first['device']}, "
                    f"{first['threads']} thread(s), {first['imgsz']}×{first['imgsz']}, batch {first['batch']}; "
                    f"paper: {first['paper_column']}",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)
    for col in ("row", "built", "Mmadd", "MAC MB", f"{first['estimator']} ms", "rel", "95% CI", "paper", unit,
                f"paper {paper_unit}"):
        t.add_column(col, justify="left" if col in ("row", "built") else "right",
                     no_wrap=col in ("row", "built", "95% CI"))
    for r in df.to_dict(orient="records"):
        ci = "" if r["is_baseline"] or math.isnan(r["rel_ci_low"]) else f"{r['rel_ci_low']:.2f}-{r['rel_ci_high']:.2f}"
        rel = "not measured" if math.isnan(r["rel_latency"]) else f"{r['rel_latency']:.2f}"
        tp = "—" if math.isnan(r["throughput"]) else f"{r['throughput']:.1f}"
        t.add_row(_row_label(r["row"]), r["short"] + ("" if r["exact"] else "*"), f"{r['madds'] / 1e6:.0f}",
                  f"{r['mac_bytes'] / 1e6:.1f}", _ms(r["estimate_ms"]), rel, ci,
                  f"{r['paper_rel_latency']:.2f}", tp, f"{r['paper_throughput']:g}")
    return t


def _verdict_lines(res: GuidelineResults, g: str, width: int | str, backend: str) -> list[str]:
    lines = []
    v = res.verdicts
    vs = v[(v["guideline"] == g) & (v["width"].astype(str) == str(width)) & (v["backend"] == backend)]
    for v in vs.to_dict(orient="records"):
        style = VERDICT_STYLE.get(v["verdict"], "bold red")
        paper = f" (paper's numbers by the same rule: {v['paper_verdict']})" if v["paper_verdict"] else ""
        width = "all widths" if v["width"] == "all" else f"×{v['width']}"
        lines.append(f"[{style}]{g} {width}: {v['verdict']}[/]{paper} — {v['reason']}")
    return lines


def _verdict_matrix_table(res: GuidelineResults) -> Table:
    """Guideline × width rows, one column per backend, each cell the verdict under that backend."""
    matrix = res.verdict_matrix()
    precision = dict(zip(res.verdicts["backend"], res.verdicts["precision"], strict=True))
    t = Table(title="Verdicts per runtime (each backend's rows relative to its own baseline row)",
              title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    t.add_column("guideline")
    t.add_column("width")
    for b in res.backends:
        t.add_column(f"{b}\n{precision.get(b, '')}")
    for r in matrix.to_dict(orient="records"):
        width = "all widths" if r["width"] == "all" else f"×{r['width']}"
        t.add_row(r["guideline"], width, *(f"[{VERDICT_STYLE.get(r[b], 'bold red')}]{r[b]}[/]" if r[b] else ""
                                           for b in res.backends))
    return t


def _print_tables(res: GuidelineResults, backend: str) -> None:
    """One backend's guideline tables with their verdict lines (today's output for a single backend)."""
    for g, all_rows in res.tables.items():
        df = all_rows[all_rows["backend"] == backend]
        widths = sorted(df["width"].unique())
        for w in widths:
            console.print(_guideline_table(res, g, int(w), backend))
            for line in _verdict_lines(res, g, int(w), backend):
                console.print(line)
        if len(widths) > 1:
            for line in _verdict_lines(res, g, "all", backend):
                console.print(line)
        console.print()


def guidelines(
    only: str = typer.Option(None, "--only", help="Comma-separated subset of G1,G2,G3,G4 (default: all)."),
    quick: bool = typer.Option(False, "--quick", help="×1 only with a short time budget (~1 min on 2 cores)."),
    device: str = device_option(note="cuda uses the paper's GPU channel set."),
    backend: str = backend_option(note="One backend, or several comma-separated (torch,onnxruntime-int8,openvino):"
                                   " every table timed once per backend, verdicts side by side."),
    threads: str = typer.Option("1", help="Intra-op threads: 1 (like the paper's ARM) or N or 'all'."),
    width: str = typer.Option(None, "--width", help="Width multipliers, e.g. 1,2,4 (default: 1,2,4; --quick: 1)."),
    imgsz: int = typer.Option(56, help="Square input size (paper: 56)."),
    batch: int = typer.Option(1, help="Batch size (paper: 1 on ARM; GPU unstated, 1 is our reading)."),
    platform: str = typer.Option(None, help="Paper channel set/columns: arm or gpu (default: by device)."),
    budget: float = typer.Option(None, help="Seconds of interleaved timing per table (default 12 quick / 30 per width)."),
    estimator: str = typer.Option(DEFAULT_ESTIMATOR, help=f"One of {', '.join(ESTIMATORS)}."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    out: Path = typer.Option(None, help="Run folder (default results/guidelines/<timestamp>/)."),
) -> None:
    """Reproduce ShuffleNet V2's guideline experiments G1-G4 here and compare with the paper."""
    with warnings.catch_warnings():  # busy-machine warnings are collected in the result and printed below
        warnings.filterwarnings("ignore", message="machine is busy", category=RuntimeWarning)
        res = run_guidelines(only, quick=quick, device=device, backend=backend, threads=threads, widths=width,
                             imgsz=imgsz, batch=batch, platform=platform, budget_s=budget, estimator=estimator,
                             progress=not json_out)
    path = res.save(out if out is not None else new_run_dir("guidelines"))
    if json_out:
        print(json.dumps({**res.to_json(), "run_dir": str(path)}, indent=2, default=str))
        return
    for b in res.backends:
        _print_tables(res, b)
    if len(res.backends) > 1:
        console.print(_verdict_matrix_table(res))
    for s in res.not_measured():
        console.print(f"[yellow]not measured:[/] {s}")
    for s in res.substitutions:
        console.print(f"[yellow]* not buildable as printed:[/] {s}")
    for s in res.config_notes:
        console.print(f"[dim]note: {s}[/]")
    console.print(f"[dim]{READINGS}[/]")
    console.print(f"[dim]paper: {CITATION}[/]")
    for w in res.warnings:
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"{res.elapsed_s:.1f} s; saved to {path}")


def _lint_table(res: LintResult) -> Table:
    t = Table(title=f"guideline lint: {res.name} @ {res.imgsz}×{res.imgsz}", title_justify="left")
    cols = ["layer", "type", "convs", "G1 max c ratio", "G1 excess MB", "G2 groups", "G3 frag/par/ser",
            "G4 ew mac %", "G4 ew flops %"]
    if res.measured:
        cols += ["ms", "time %"]
    cols.append("flags")
    for c in cols:
        t.add_column(c, justify="left" if c in ("type", "flags", "G2 groups") else "right")
    for r in res.layers.to_dict(orient="records"):
        flags = " ".join(g for g in ("G1", "G2", "G3", "G4") if r[f"{g.lower()}_flag"])
        ratio = "" if math.isnan(r["g1_max_ratio"]) else f"{r['g1_max_ratio']:.1f}"
        cells = [str(r["layer"]), r["type"], str(r["n_convs"]), ratio,
                 f"{r['g1_mac_excess_bytes'] / 1e6:.2f}" if r["g1_mac_excess_bytes"] else "",
                 r["groups"], f"{r['fragments']}/{r['parallel_width']}/{r['series_depth']}",
                 f"{100 * r['ew_mac_share']:.0f}", f"{100 * r['ew_flops_share']:.1f}"]
        if res.measured:
            cells += [f"{r['estimate_ms']:.3f}", f"{100 * r['latency_share']:.1f}"]
        cells.append(f"[yellow]{flags}[/]" if flags else "")
        t.add_row(*cells)
    return t


def lint(
    config: str = typer.Argument(..., help=f"The model: {PYTORCH_FORMS}."),
    imgsz: int = typer.Option(None, help="Square input size (default: the config's, else 640 / 224)."),
    measure: bool = typer.Option(False, "--measure", help="Also time every layer on its real input."),
    device: str = DEVICE_OPT,
    backend: str = backend_option(note="For --measure (a backend that times single layers)."),
    threads: int = typer.Option(1, help="Threads for --measure."),
    budget: float = typer.Option(10.0, help="Seconds of timing for --measure."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    out: Path = typer.Option(None, help="Also write the tables and meta.json to this run folder."),
) -> None:
    """Report, per layer, where a model goes against ShuffleNet V2's guidelines G1-G4."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="machine is busy", category=RuntimeWarning)
        res = lint_model(config, imgsz=imgsz, measure=measure, backend=backend, device=device, threads=threads,
                         budget_s=budget, progress=measure and not json_out)
    if out is not None:
        writer = RunWriter(Path(out), "lint", threads=threads, device=device)
        writer.save_table(res.layers, "layers")
        writer.save_table(res.findings, "findings")
        writer.save_table(res.convs, "convs")
        writer.write_meta(**res.meta())
    if json_out:
        print(json.dumps(res.to_json(), indent=2, default=str))
        return
    console.print(_lint_table(res))
    console.print(res.summary())
    for w in res.warnings:
        console.print(f"[dim]{w}[/]")
    if out is not None:
        console.print(f"saved to {out}")


def register(app: typer.Typer) -> None:
    app.command("guidelines")(guidelines)
    app.command("lint")(lint)
