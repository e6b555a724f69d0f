"""``latlab report RESULTS_DIR [--out report.html]``: self-contained HTML pages for the runs in a folder.

Parse arguments → :func:`latlab.report.build_report` → print where the pages are.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from latlab.report import build_report
from latlab.report.loaders import KIND_TITLES
from latlab.validate import output_file

console = Console()
err_console = Console(stderr=True)


def report(
    results_dir: Path = typer.Argument(..., help="A results folder (e.g. results/) or one run folder."),
    out: Path = typer.Option(None, "--out", help="Index page to write (default RESULTS_DIR/report.html); "
                             "one page per kind of result is written beside it."),
) -> None:
    """Build offline HTML report pages (guidelines, profile, search, latency tables) from run folders."""
    if out is not None:
        output_file(out, "--out")
    rep = build_report(results_dir, out)
    for kind, path in rep.pages.items():
        n = sum(r.kind == kind for r in rep.runs)
        console.print(f"{KIND_TITLES[kind]}: {n} run(s) → {escape(str(path))}")
    for path, why in rep.skipped:
        console.print(f"[yellow]skipped[/] {escape(str(path))}: {escape(why)}")
    for path, why in rep.unreadable:
        err_console.print(f"[yellow]warning:[/] {escape(str(path))} could not be read ({escape(why)}); "
                          "its tables are missing from the report", highlight=False, soft_wrap=True)
    console.print(f"report: {escape(str(rep.index))}")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
