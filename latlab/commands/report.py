"""``latlab report RESULTS_DIR [--out report.html]``: self-contained HTML pages for the runs in a folder;
``latlab report compare-studies STUDY_A STUDY_B``: two search studies' fronts and block choices on one page.

Parse arguments → :func:`latlab.report.build_report` / :func:`latlab.report.study_diff.compare_studies` →
print where the pages are. ``report`` is a group whose default command builds the pages, so
``latlab report RESULTS_DIR`` keeps working beside the ``compare-studies`` subcommand.
"""

from __future__ import annotations

from pathlib import Path

import click
import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from latlab.report import build_report
from latlab.report.loaders import KIND_TITLES
from latlab.report.study_diff import DIFF_THRESHOLD, compare_studies
from latlab.runs import RESULTS_ROOT
from latlab.validate import output_file

PAGES_COMMAND = "pages"

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


def compare(
    study_a: str = typer.Argument(..., help="First study name (e.g. the search scored on onnxruntime-int8)."),
    study_b: str = typer.Argument(..., help="Second study name (e.g. the same search on eager torch)."),
    storage_a: str = typer.Option(None, "--storage-a", help="Journal file or RDB URL of STUDY_A "
                                  "(default results/search/STUDY_A/journal.log)."),
    storage_b: str = typer.Option(None, "--storage-b", help="Journal file or RDB URL of STUDY_B."),
    top_k: int = typer.Option(None, "--top-k", help="Compare each study's K most accurate feasible trials "
                              "instead of its Pareto front."),
    out: Path = typer.Option(None, "--out", help="Page to write (default results/search/compare-A-vs-B.html)."),
) -> None:
    """Two search studies on one page: both fronts (each on its own latency backend) and the block choices
    of their best models, dimension by dimension, the differing ones marked."""
    if out is not None:
        output_file(out, "--out")
    comp = compare_studies(study_a, study_b, storage_a=storage_a, storage_b=storage_b, root=RESULTS_ROOT,
                           top_k=top_k, out=out)
    differing = [d.dimension for d in comp.dimensions if d.differs]
    console.print(f"{escape(comp.a.label)}: {len(comp.a.members)} {comp.members} members; "
                  f"{escape(comp.b.label)}: {len(comp.b.members)}")
    console.print(f"dimensions that differ (distance ≥ {DIFF_THRESHOLD}): "
                  f"{escape(', '.join(differing)) if differing else 'none'}")
    for note in comp.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"page: {escape(str(comp.page))}")


class _PagesByDefault(TyperGroup):
    """``latlab report ARGS`` runs the ``pages`` command unless ARGS start with a subcommand or --help."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [PAGES_COMMAND, *args]
        return super().parse_args(ctx, args)


report_app = typer.Typer(cls=_PagesByDefault, no_args_is_help=True,
                         help="HTML report pages: `latlab report RESULTS_DIR` for the runs in a folder, "
                              "`latlab report compare-studies A B` for two search studies.")


def register(app: typer.Typer) -> None:
    report_app.command(PAGES_COMMAND)(report)
    report_app.command("compare-studies")(compare)
    app.add_typer(report_app, name="report")
