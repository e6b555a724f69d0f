"""``latlab fidelity``: how far each accuracy estimator can be trusted on this space and data.

``reference-set`` samples and writes the reference architectures, ``reference`` runs (resumably) their
reference trainings, ``run`` scores them with the estimators and writes the fidelity table. Each command is
one library call (:mod:`latlab.search.reference`, :mod:`latlab.search.fidelity_run`) and a rich printout.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pandas as pd
import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from latlab.errors import ConfigError
from latlab.search.fidelity import N_BOOT, ci_text
from latlab.search.fidelity_run import DEFAULT_CACHE, publish, run_fidelity
from latlab.search.reference import (
    DEFAULT_RESULTS,
    DEFAULT_SET,
    ReferenceProtocol,
    build_reference_set,
    data_separation,
    parse_shard,
    read_protocol,
    reference_table,
    train_reference,
)
from latlab.validate import positive_int_list

console = Console()
fidelity_app = typer.Typer(help="Rank fidelity of accuracy estimators: reference set, reference trainings, "
                                "the fidelity table.", no_args_is_help=True)


def _say(msg: str) -> None:
    console.print(escape(msg), highlight=False)


@fidelity_app.command("reference-set")
def reference_set(
    n: int = typer.Option(16, "--n", help="Architectures sampled from the space (the seed detectors are added)."),
    seed: int = typer.Option(0, help="Sampling seed."),
    imgsz: int = typer.Option(160, help="Input size for the latency measurement."),
    space: Path = typer.Option(None, help="Search-space YAML (default: the shipped space)."),
    pool_factor: int = typer.Option(4, help="Pool size = pool_factor × n before the stratified pick."),
    out: Path = typer.Option(DEFAULT_SET, "--out", help="Reference set YAML to write."),
) -> None:
    """Sample a pool, time it (interleaved), pick n stratified over latency, add the seeds, write YAML."""
    ref = build_reference_set(space, n=n, seed=seed, imgsz=imgsz, pool_factor=pool_factor, out=out, progress=_say)
    t = Table(box=box.SIMPLE_HEAD, title=f"{out}: {len(ref.archs)} architectures", title_justify="left")
    for c in ("name", "role", "latency ms", "arch"):
        t.add_column(c, justify="right" if c == "latency ms" else "left")
    for a in ref.archs:
        t.add_row(a.name, a.role, f"{a.latency_ms_at_build:.2f}", escape(a.arch))
    console.print(t)


def _protocol(out: Path, **given: object) -> ReferenceProtocol:
    """The stored protocol of ``out`` (or the default) with the options given on the command line."""
    base = read_protocol(out) or ReferenceProtocol()
    changes = {k: v for k, v in given.items() if v is not None}
    if isinstance(changes.get("seeds"), str):
        try:
            changes["seeds"] = tuple(int(s) for s in str(changes["seeds"]).split(","))
        except ValueError:
            raise ConfigError(f"--seeds {given['seeds']!r}: expected integers like 0,1") from None
    return replace(base, **changes)


@fidelity_app.command("reference")
def reference(
    set_path: Path = typer.Option(DEFAULT_SET, "--set", help="Reference set YAML."),
    out: Path = typer.Option(DEFAULT_RESULTS, "--out", help="Results CSV (appended; a JSON sidecar holds the "
                                                           "protocol)."),
    shard: str = typer.Option("0/1", help="i/k: train only pairs whose index % k == i (parallel processes)."),
    epochs: int = typer.Option(None, help="Epochs per training (default: the stored protocol's, else 12)."),
    imgsz: int = typer.Option(None, help="Training image size."),
    n_train: int = typer.Option(None, help="Built-in data: training images."),
    n_val: int = typer.Option(None, help="Built-in data: validation images."),
    batch: int = typer.Option(None, help="Batch size."),
    seeds: str = typer.Option(None, help="Training seeds, comma-separated (default 0,1)."),
    data: str = typer.Option(None, help="Dataset ('builtin', a data YAML or a VOC folder)."),
    val_max_images: int = typer.Option(None, help="Validate on at most this many images."),
    threads: int = typer.Option(None, help="Intra-op threads per training."),
    preset: str = typer.Option(None, help="Built-in data preset (default shapes10; shapes4-easy: the quick "
                                          "start's)."),
) -> None:
    """Train every (architecture, seed) pair not yet in the results; a killed run continues when rerun."""
    protocol = _protocol(out, epochs=epochs, imgsz=imgsz, n_train=n_train, n_val=n_val, batch=batch, seeds=seeds,
                         data=data, val_max_images=val_max_images, threads=threads, preset=preset)
    run = train_reference(set_path, protocol, out, shard=parse_shard(shard), progress=_say)
    console.print(f"[bold]{out}[/]: {run.done_before} trainings were done, {len(run.trained)} now, "
                  f"{run.remaining} left" + (" (other shards)" if run.remaining else "")
                  + (" · a truncated last line was dropped" if run.repaired else ""))
    table = reference_table(out) if out.is_file() else None
    if table is not None and len(table):
        _say(data_separation(table).text())


def _fmt(v: object, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)) or v is pd.NA:
        return "–"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


@fidelity_app.command("run")
def run(
    estimators: str = typer.Option(None, help="Comma-separated estimator names (default: every registered one "
                                              "needing no argument); params, madds, mac_bytes are always added."),
    reference_results: Path = typer.Option(DEFAULT_RESULTS, "--reference", help="Reference results CSV."),
    set_path: Path = typer.Option(DEFAULT_SET, "--set", help="Reference set YAML."),
    out: Path = typer.Option(None, "--out", help="Run folder (default results/fidelity/<time>/)."),
    n_boot: int = typer.Option(N_BOOT, help="Bootstrap resamples of each CI."),
    train_epochs: int = typer.Option(None, min=1, help="Epochs of estimators that train (default: the "
                                     "reference's epochs / 4)."),
    also_train_epochs: str = typer.Option(
        None, "--also-train-epochs", help="More budgets for the estimators that train, comma-separated (e.g. 8): "
                                          "one more row each, named NAME@<E>ep."),
    cache: Path = typer.Option(DEFAULT_CACHE, help="Estimates already made with "
                               "the same context are reused from (and new ones appended to) this CSV."),
    publish_to: Path = typer.Option(None, "--publish", help="Also copy the table (+ .json sidecar) here, e.g. "
                                    "latlab/configs/fidelity/fidelity_v1.csv (what the search page reads)."),
) -> None:
    """Score the reference set with each estimator; Kendall τ / Spearman ρ vs the reference, with CIs."""
    names = [s.strip() for s in estimators.split(",") if s.strip()] if estimators else None
    res = run_fidelity(names, reference_set=set_path, reference_results=reference_results, out_dir=out,
                       n_boot=n_boot, train_epochs=train_epochs, progress=_say,
                       extra_train_epochs=positive_int_list(also_train_epochs, "--also-train-epochs", item="an epoch count",
                                                            example="8,16") if also_train_epochs else (),
                       cache=cache)
    t = Table(box=box.SIMPLE_HEAD, title=f"rank fidelity on {res.meta['n_archs']} reference architectures "
              f"(95 % bootstrap CIs)", title_justify="left")
    for c in ("estimator", "kind", "n", "Kendall τ [CI]", "Spearman ρ [CI]", "CPU s/cand.", "beats params"):
        t.add_column(c, justify="left" if c in ("estimator", "kind") else "right", no_wrap=c == "estimator")
    for r in res.table.to_dict(orient="records"):
        t.add_row(r["estimator"], r["kind"], str(r["n"]),
                  ci_text("τ", r["kendall_tau"], r["tau_ci_low"], r["tau_ci_high"]).removeprefix("τ = "),
                  ci_text("ρ", r["spearman_rho"], r["rho_ci_low"], r["rho_ci_high"]).removeprefix("ρ = "),
                  _fmt(r["cost_s_per_candidate"], 3), _fmt(r["beats_params"]))
    console.print(t)
    _say(res.separation.text())
    console.print(f"wrote [bold]{res.path}[/] (fidelity.csv, estimates.csv, reference.csv, meta.json)")
    if publish_to is not None and res.path is not None:
        console.print(f"published [bold]{publish(res.path, publish_to)}[/]")


def register(app: typer.Typer) -> None:
    app.add_typer(fidelity_app, name="fidelity")
