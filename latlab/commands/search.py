"""``latlab search run|show|export|confirm|dashboard``: latency-aware architecture search over a YAML search space."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from latlab.commands.detection import AMP_HELP
from latlab.commands.options import BACKEND_OPT, backend_help, device_option
from latlab.detection.synthetic import PRESETS
from latlab.runs import RESULTS_ROOT
from latlab.search.confirm import confirm_winner, winner_and_baseline
from latlab.search.dashboard import DEFAULT_HOST, DEFAULT_PORT, serve_dashboard
from latlab.search.estimators import list_estimators
from latlab.search.export import export_study, trials_frame
from latlab.search.objective_registry import DEFAULT_OBJECTIVES, OBJECTIVES
from latlab.search.objectives import builtin_data_kwargs
from latlab.search.records import TrialRecord
from latlab.search.reference import parse_shard
from latlab.search.settings import DEFAULT_BASELINES, SearchSettings, parse_latency_budget
from latlab.search.storage import load_search_study
from latlab.search.workers import run_workers

console = Console()
search_app = typer.Typer(help="Latency-constrained / Pareto architecture search (Optuna).", no_args_is_help=True)


def _fmt(v: object, spec: str = ".4f") -> str:
    if v is None or pd.isna(v):
        return "-"
    try:
        return format(v, spec)
    except (TypeError, ValueError):
        return str(v)


class TrialPrinter:
    """Prints the study's start and each trial with the best so far (one per worker process: picklable)."""

    def __init__(self) -> None:
        self.best: dict[str, float] = {}

    def start(self, info: dict) -> None:
        verb = "created" if info["created"] else f"joined ({info['trials_before']} trials so far)"
        console.print(f"worker {info['worker']} ({escape(info['train_device'])}): study "
                      f"[bold]{escape(info['study'])}[/] {verb} in {escape(info['storage'])} "
                      f"(target {info['target'] or 'time budget'}, device key {info['hardware_key']})")

    def __call__(self, r: TrialRecord) -> None:
        best = self.best
        tag = f"baseline {r.baseline}" if r.baseline else r.arch
        value = r.map if not math.isnan(r.map) else r.accuracy_score
        label = "mAP" if not math.isnan(r.map) or math.isnan(r.accuracy_score) else "score"
        ok = r.state == "COMPLETE" and not r.baseline and r.feasible and not math.isnan(value)
        if ok and value > best.get("map", -math.inf):
            best.update(map=value, trial=r.number, latency=r.latency_ms)
        so_far = (f"best {label} {best['map']:.4f} (trial {int(best['trial'])}, {best['latency']:.2f} ms)"
                  if best else "no feasible trial yet")
        note = f" [dim]{escape(r.note)}[/]" if r.note else ""
        console.print(f"trial {r.number:>4} {r.state:<8} {_fmt(r.latency_ms, '.2f'):>7} ms  {label} {_fmt(value)}  "
                      f"{escape(tag)}{note}  | {so_far}", highlight=False)


def run(
    mode: str = typer.Option("constrained", help="constrained (max mAP under a latency budget) or pareto."),
    latency_budget: str = typer.Option(None, "--latency-budget", help="Latency budget with a unit, e.g. 12ms."),
    budget_from: str = typer.Option(
        None, "--budget-from",
        help="Budget = this baseline's latency, measured once by the search (the baseline is judged by that "
             "same measurement)."),
    budget_scale: float = typer.Option(
        1.0, "--budget-scale", help="With --budget-from: the budget is this fraction of the baseline's latency "
                                    "(0.8: at least 20 % faster than it)."),
    trials: int = typer.Option(None, "--trials", help="Search trials to finish (baselines not counted)."),
    hours: float = typer.Option(None, "--hours", help="Stop starting trials after this many hours."),
    space: Path = typer.Option(None, "--space", help="Search space YAML (default: the shipped space)."),
    storage: str = typer.Option(None, "--storage", help="Journal file path or RDB URL (postgresql://...)."),
    study: str = typer.Option(None, "--study", help="Study name (default: <mode>-<sampler>)."),
    imgsz: int = typer.Option(160, "--imgsz", help="Input size for latency and training."),
    minutes: float = typer.Option(None, "--minutes", help="Training budget per trial in minutes."),
    epochs: int = typer.Option(None, "--epochs", help="Training budget per trial in epochs (default 3)."),
    device: str = device_option(note="Where latency is measured (see --train-device for training)."),
    backend: str = BACKEND_OPT,
    accuracy_backend: str = typer.Option(
        "torch", "--accuracy-backend",
        help=backend_help("Score each trained candidate's final EMA weights through this backend too; the "
                          "objective uses its mAP (the FP32 mAP is kept as map_fp32).")),
    train_device: str = typer.Option(
        "cpu", "--train-device",
        help="Where candidates train: cpu, cuda, cuda:N or mps, or a comma list (cuda:0,1,2,3), one per worker."),
    amp: str = typer.Option("auto", "--amp", help=AMP_HELP),
    workers: int = typer.Option(None, "--workers",
                                help="Local worker processes on the study (default: one per --train-device)."),
    latency: str = typer.Option("measured", "--latency", help="measured, or lut:FILE (latency table)."),
    sampler: str = typer.Option("auto", "--sampler",
                                help="auto (gp for pareto, tpe for constrained), gp, tpe, nsga2 or random."),
    seed: int = typer.Option(0, "--seed"),
    resume: bool = typer.Option(False, "--resume", help="Continue an existing study (error if absent)."),
    threads: int = typer.Option(1, "--threads",
                                help="Threads for latency measurement (recorded); also each CPU worker's training "
                                     "threads when --workers > 1."),
    data: str = typer.Option("builtin", "--data", help="'builtin' or a YOLO data YAML / VOC folder."),
    preset: str = typer.Option(None, "--preset", help=f"Built-in data: generator preset ({', '.join(PRESETS)})."),
    n_train: int = typer.Option(None, "--n-train", help="Built-in data: training images."),
    n_val: int = typer.Option(None, "--n-val", help="Built-in data: validation images."),
    pruner: str = typer.Option("median", "--pruner", help="median, halving or none (constrained mode)."),
    baselines: str = typer.Option(",".join(DEFAULT_BASELINES), "--baselines",
                                  help="Comma-separated zoo detectors evaluated as baseline trials ('' for none)."),
    batch: int = typer.Option(16, "--batch"),
    accuracy: str = typer.Option(
        "train", "--accuracy",
        help="Accuracy estimator (NAME or NAME:ARG): "
             + "; ".join(f"{e.name}{':' + e.arg if e.arg else ''} ({e.kind})" for e in list_estimators()) + "."),
    objective: list[str] = typer.Option(
        [], "--objective",
        help=f"Add an objective to the pareto study (repeatable; {', '.join(DEFAULT_OBJECTIVES)} are always in): "
             + ", ".join(n for n in OBJECTIVES if n not in DEFAULT_OBJECTIVES) + "."),
) -> None:
    """Run, resume or join a search study; prints each trial and the best so far."""
    settings = SearchSettings(
        mode=mode, latency_budget_ms=parse_latency_budget(latency_budget), n_trials=trials, hours=hours,
        space=space, storage=storage, study=study, imgsz=imgsz, minutes=minutes, epochs=epochs, device=device,
        backend=backend, accuracy_backend=accuracy_backend, latency=latency, sampler=sampler, seed=seed, resume=resume, threads=threads, data=data,
        pruner=pruner,
        baselines=tuple(b for b in (x.strip() for x in baselines.split(",")) if b), batch=batch,
        accuracy=accuracy, budget_from=budget_from, budget_scale=budget_scale,
        data_kwargs=builtin_data_kwargs(data, preset=preset, n_train=n_train, n_val=n_val), train_device=train_device, amp=amp, workers=workers)
    extra = [o for o in objective if o not in (*DEFAULT_OBJECTIVES, "accuracy_score")]
    if extra:
        base = settings.default_objectives()  # ("latency_ms", the estimator's objective)
        settings.objectives = (*base, *(o for o in extra if o not in base))
    printer = TrialPrinter()
    result = run_workers(settings, on_trial=printer, on_start=printer.start)
    for note in result.worker_notes:
        console.print(f"[yellow]warning:[/] {escape(note)}; the other workers recovered its trial")
    console.print(f"done: {result.n_run_here} trial(s) run here in {result.wall_s / 60:.1f} min; "
                  f"{len(result.trials)} in the study")
    if result.best:
        b = result.best
        score = (f"mAP {b['map']:.4f} mAP50 {b['map50']:.4f}" if not pd.isna(b["map"])
                 else f"{accuracy} score {b['accuracy_score']:.4g}")
        console.print(f"best: trial {b['trial']} {score} at {b['latency_ms']:.2f} ms "
                      f"({escape(str(b['arch']))})", highlight=False)
    console.print(f"export with: latlab search export {result.study}"
                  + (f" --storage {storage}" if storage else ""))


def show(
    study: str = typer.Argument(..., help="Study name."),
    storage: str = typer.Option(None, "--storage", help="Journal file path or RDB URL."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON records instead of a table."),
) -> None:
    """List every trial: state, latency, mAP, feasibility, baseline flag; best (*) and Pareto (P) marked."""
    st, info = load_search_study(study, storage, RESULTS_ROOT)
    df = trials_frame(st)
    if json_out:
        print(df.to_json(orient="records", indent=2))
        return
    table = Table(title=f"search study {study} ({info.kind}: {info.location})")
    for col in ("trial", "mark", "state", "latency ms", "mAP", "mAP50", "feasible", "params", "arch", "note"):
        table.add_column(col, justify="right" if col in ("trial", "latency ms", "mAP", "mAP50", "params") else "left")
    for r in df.to_dict(orient="records"):
        mark = ("*" if r["best"] else "") + ("P" if r["pareto"] else "") + ("B" if r["baseline"] else "")
        table.add_row(str(r["trial"]), mark, r["state"], _fmt(r["latency_ms"], ".2f"), _fmt(r["map"]),
                      _fmt(r["map50"]), _fmt(r["feasible"], ""), _fmt(r["params"], ","), escape(str(r["arch"])),
                      escape(str(r["note"] or "")))
    console.print(table)
    console.print("marks: * best feasible, P Pareto front (latency vs mAP), B baseline")


def export(
    study: str = typer.Argument(..., help="Study name."),
    storage: str = typer.Option(None, "--storage", help="Journal file path or RDB URL."),
    out: Path = typer.Option(None, "--out", help="Output folder (default results/search/<study>/export-<time>)."),
) -> None:
    """Write trials.csv, pareto.csv, one YAML per trial and meta.json into a run folder."""
    st, info = load_search_study(study, storage, RESULTS_ROOT)
    path = export_study(st, out, storage=info.location)
    meta = json.loads((path / "meta.json").read_text())
    console.print(f"exported {meta['n_trials']} trials ({len(meta['pareto_trials'])} on the Pareto front) to {path}")


def confirm(
    study: str = typer.Argument(..., help="Study name."),
    against: str = typer.Option("yolov5s-shufflenetv2", "--against", help="Baseline detector (zoo name)."),
    storage: str = typer.Option(None, "--storage", help="Journal file path or RDB URL."),
    trial: int = typer.Option(None, "--trial", help="Trial to confirm (default: the best feasible one)."),
    reference: Path = typer.Option(
        None, "--reference", help="Reference results CSV whose protocol (sidecar) retrains both (default: the "
                                  "newest shipped one trained on the study's data)."),
    latency_scale: float = typer.Option(0.8, "--latency-scale", help="Winner / baseline latency must be ≤ this."),
    margin_sd: float = typer.Option(2.0, "--margin-sd", help="Winner's mAP must beat the baseline's by this many "
                                                             "seed-to-seed sd."),
    rounds: int = typer.Option(40, "--rounds", help="Interleaved latency rounds."),
    shard: str = typer.Option("0/1", help="i/k: this process trains pairs whose index % k == i."),
    out: Path = typer.Option(None, "--out", help="Folder (default results/search/<study>/confirm-<trial>-<against>; "
                                                 "rerun to continue a killed run)."),
) -> None:
    """Retrain the study's winner and a baseline with the reference protocol (two seeds), time both interleaved,
    and say whether the winner dominates: latency ≤ scale × the baseline's, mAP ≥ baseline + margin × seed sd."""
    row, _, _ = winner_and_baseline(study, against, storage=storage, results_root=RESULTS_ROOT, trial=trial)
    folder = out or RESULTS_ROOT / "search" / study / f"confirm-{row['trial']}-{against}"
    result = confirm_winner(study, against, folder, storage=storage, results_root=RESULTS_ROOT, trial=row["trial"],
                            reference=reference, latency_scale=latency_scale, margin_sd=margin_sd, rounds=rounds,
                            shard=parse_shard(shard), progress=lambda m: console.print(escape(m), highlight=False))
    if result is None:
        console.print(f"{folder}: trainings left for other shards; rerun when they finish")
        return
    console.print(escape(result.text()), highlight=False)
    console.print(f"written to {folder}/confirmation.json")


def dashboard(
    study: str = typer.Argument(..., help="Study name."),
    storage: str = typer.Option(None, "--storage", help="Journal file path or RDB URL."),
    port: int = typer.Option(DEFAULT_PORT, "--port", help="Port to serve on (0: any free port)."),
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to bind; the default serves this machine only."),
) -> None:
    """Serve optuna-dashboard on the study's storage until Ctrl-C (needs latlab[dashboard])."""
    server = serve_dashboard(study, storage, host=host, port=port, root=RESULTS_ROOT)
    console.print(f"dashboard for study [bold]{escape(study)}[/] ({escape(server.storage)}) at {server.url} "
                  "- Ctrl-C stops it", highlight=False)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


def register(app: typer.Typer) -> None:
    search_app.command("run")(run)
    search_app.command("show")(show)
    search_app.command("export")(export)
    search_app.command("confirm")(confirm)
    search_app.command("dashboard")(dashboard)
    app.add_typer(search_app, name="search")
