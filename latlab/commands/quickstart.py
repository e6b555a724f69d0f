"""``latlab quickstart``: guideline benchmarks, seed profiles, a small constrained search and the report."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from latlab.quickstart import QuickstartSettings, run_quickstart

console = Console()


def quickstart(
    imgsz: int = typer.Option(128, help="Input size for profiling the seed detectors."),
    search_imgsz: int = typer.Option(64, help="Input size of the search (latency and training)."),
    trials: int = typer.Option(4, help="Search trials (the three seed baselines come on top)."),
    epochs: int = typer.Option(4, help="Training epochs per search trial (2000 built-in images each)."),
    threads: int = typer.Option(1, help="Threads for timing and training."),
    skip_guidelines: bool = typer.Option(False, help="Skip the guideline micro-benchmarks."),
    skip_search: bool = typer.Option(False, help="Skip the search."),
    out: str = typer.Option(None, help="Output folder (default results/quickstart/<time>/)."),
) -> None:
    """Run the whole latlab story on embedded defaults (about 10 minutes on 2 CPU cores)."""
    settings = QuickstartSettings(imgsz=imgsz, search_imgsz=search_imgsz, threads=threads, search_trials=trials,
                                  train_epochs=epochs,
                                  guidelines=not skip_guidelines, search=not skip_search,
                                  out=Path(out) if out else None)
    def trial_line(r) -> None:
        feasible = {True: "within budget", False: "over budget", None: ""}[r.feasible]
        console.print(f"trial {r.number:>2} {r.state:<9} {r.latency_ms:7.2f} ms  mAP50-95 {r.map:.3f}  "
                      f"{feasible:<13} {escape(r.arch)}", highlight=False)

    result = run_quickstart(settings, on_step=lambda step: console.rule(f"[bold]{step}"), on_trial=trial_line)
    steps = ", ".join(f"{k} {v:.0f} s" for k, v in result.step_seconds.items())
    console.print(f"done in {sum(result.step_seconds.values()):.0f} s ({steps})")
    if result.budget_ms is not None:
        console.print(f"latency budget = seed ShuffleNetV2 detector's latency as the search measured it: "
                      f"{result.budget_ms:.2f} ms")
    sep = result.separation
    if sep is not None:
        verdict = "more than" if sep.ratio > 2 else "NOT more than"
        console.print(f"front: mAP50-95 spans {sep.map_range:.3f} over {sep.n_trials} trained models, "
                      f"{sep.ratio:.1f}× the seed-to-seed sd {sep.seed_sd:.3f} measured for this protocol "
                      f"({verdict} 2× the noise)", highlight=False)
    if result.seeds is not None:
        for r in result.seeds.itertuples():
            console.print(f"seed {r.model}: mAP50-95 {r.map:.3f} (rank {r.rank}); reference {r.reference_map:.3f} "
                          f"± {r.reference_sd:.3f} over training seeds (rank {r.reference_rank})", highlight=False)
    console.print(f"[bold green]report:[/] {result.report}")


def register(app: typer.Typer) -> None:
    app.command("quickstart")(quickstart)
