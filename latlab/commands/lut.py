"""``latlab lut``: latency tables for a target device: build, board kit, import, predict, accuracy check.

Each command parses its options, makes one library call from ``latlab.lut`` and prints with rich. The search
space is wired in here (``latlab.search.coverage``): the latency-table package never imports the search.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from latlab.commands.options import BACKEND_OPT, DEVICE_OPT, backend_option, device_option
from latlab.lut.build import (
    CALIB_SEED,
    DEFAULT_BATCH,
    DEFAULT_CALIB,
    DEFAULT_IMGSZ,
    DEFAULT_ROUNDS,
    build_table,
)
from latlab.lut.check import CHECK_SEED, check_table
from latlab.lut.kit import export_kit, import_kit
from latlab.lut.predict import predict as predict_model
from latlab.lut.table import LatencyTable
from latlab.search.coverage import space_source, table_source
from latlab.validate import image_size, output_dir, output_file, positive_int

console = Console()
lut_app = typer.Typer(help="Latency tables: build on the target, predict on the host, check the accuracy.",
                      no_args_is_help=True)

SPACE_HELP = "Search-space YAML (default: the search's shipped space)."


@lut_app.command("build")
def build(
    out: Path = typer.Option(..., "--out", help="Table file to write, e.g. board.lut.json."),
    space: Path = typer.Option(None, help=SPACE_HELP),
    imgsz: int = typer.Option(DEFAULT_IMGSZ, help="Square input size of the models."),
    backend: str = BACKEND_OPT,
    device: str = DEVICE_OPT,
    threads: int = typer.Option(1, help="Intra-op threads."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, help="Interleaved rounds per batch of blocks."),
    batch: int = typer.Option(DEFAULT_BATCH, help="Blocks timed together per batch."),
    estimator: str = typer.Option("p10", help="Estimator of each entry (p10, median, p20, min, mean)."),
    calib: int = typer.Option(DEFAULT_CALIB, help="Random models measured end to end for the calibration."),
    calib_seed: int = typer.Option(CALIB_SEED, help="Seed of the calibration models."),
    calibration: str = typer.Option("auto", help="auto, scale, linear or regression."),
    limit: int = typer.Option(None, help="Time at most this many blocks now (the build stays resumable)."),
    fresh: bool = typer.Option(False, "--fresh", help="Ignore a partial build and start over."),
) -> None:
    """Enumerate the space's distinct blocks, time them here, calibrate; resumable."""
    output_file(out, "--out")
    image_size(imgsz, "--imgsz")
    for opt, value in (("--threads", threads), ("--rounds", rounds), ("--batch", batch)):
        positive_int(value, opt)
    positive_int(calib, "--calib", low=0)
    if limit is not None:
        positive_int(limit, "--limit")
    r = build_table(out, source=space_source(space), imgsz=imgsz, backend=backend, device=device,
                    threads=threads, rounds=rounds,
                    batch=batch, estimator=estimator, calib=calib, calib_seed=calib_seed, calibration=calibration,
                    limit=limit, fresh=fresh)
    t = r.table
    state = "complete" if r.complete else "partial (run the same command again to continue)"
    console.print(f"[bold]{r.path}[/]: {len(t.entries)} entries ({r.timed} timed now, {r.resumed} resumed), "
                  f"{t.backend}, {t.threads} thread(s), {t.imgsz}px, {state}")
    if t.calibration:
        c = t.calibration
        coef = ", ".join(f"{k}={v:.4g}" for k, v in c.coef.items())
        console.print(f"calibration: {c.method} ({coef}) on {len(c.models)} models; leave-one-out MAPE "
                      + ", ".join(f"{k} {v}%" for k, v in c.loo_mape.items()))


@lut_app.command("export-kit")
def export_kit_cmd(
    out: Path = typer.Option(..., "--out", help="Kit folder to create."),
    space: Path = typer.Option(None, help=SPACE_HELP),
    imgsz: int = typer.Option(DEFAULT_IMGSZ, help="Square input size of the models."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, help="Interleaved rounds per batch (the runner's default)."),
    batch: int = typer.Option(DEFAULT_BATCH, help="Blocks per batch (the runner's default)."),
    calib: int = typer.Option(DEFAULT_CALIB, help="Calibration models included end to end."),
    calib_seed: int = typer.Option(CALIB_SEED, help="Seed of the calibration models."),
) -> None:
    """Write the space's blocks as ONNX + a runner needing only onnxruntime and numpy."""
    output_dir(out, "--out")
    image_size(imgsz, "--imgsz")
    for opt, value in (("--rounds", rounds), ("--batch", batch)):
        positive_int(value, opt)
    positive_int(calib, "--calib", low=0)
    k = export_kit(out, source=space_source(space), imgsz=imgsz, rounds=rounds, batch=batch, calib=calib,
                   calib_seed=calib_seed)
    console.print(f"[bold]{k.path}[/]: {k.blocks} blocks, {k.models} calibration models, "
                  f"{k.bytes / 1e6:.1f} MB. On the board: `python3 run_kit.py --threads 1` inside the folder, "
                  "then `latlab lut import KIT/results.jsonl --kit KIT --out board.lut.json` here.")


@lut_app.command("import")
def import_cmd(
    results: Path = typer.Argument(..., help="results.jsonl written by the kit's run_kit.py."),
    kit: Path = typer.Option(..., "--kit", help="The kit folder the results were made with."),
    out: Path = typer.Option(..., "--out", help="Table file to write."),
    calibration: str = typer.Option("auto", help="auto, scale, linear or regression."),
) -> None:
    """Turn a board kit's results into a latency table."""
    output_file(out, "--out")
    t = import_kit(results, kit, out, calibration=calibration)
    board = t.fingerprint.get("board_model") or t.fingerprint.get("cpu_model")
    console.print(f"[bold]{out}[/]: {len(t.entries)} entries from {board} ({t.fingerprint.get('machine')}), "
                  f"onnxruntime {t.versions.get('onnxruntime')}, {t.threads} thread(s), calibration "
                  f"{t.calibration.method if t.calibration else 'none'}")


@lut_app.command("predict")
def predict_cmd(
    config: str = typer.Argument(..., help="Zoo name or model YAML."),
    lut: Path = typer.Option(..., "--lut", help="Latency table file."),
    backend: str = backend_option(None, note="Require this backend (error if the table differs)."),
    threads: int = typer.Option(None, help="Require this thread count (error if the table differs)."),
    on_missing: str = typer.Option("auto", help="auto (time here if same device), measure, or error."),
    save_measured: bool = typer.Option(False, "--save-measured", help="Add blocks timed now to the table."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Predict a model's latency from a table (block sum + calibration)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="machine is busy", category=RuntimeWarning)
        p = predict_model(config, lut, backend=backend, threads=threads, on_missing=on_missing,
                          save_measured=save_measured)
    if json_out:
        console.print_json(json.dumps({"config": config, "predicted_ms": p.predicted_ms, "sum_ms": p.sum_ms,
                                       "calibrated": p.calibrated, "madds": p.madds, "mac_bytes": p.mac_bytes,
                                       "measured_now": p.measured_now,
                                       "by_part": p.by_part().to_dict(orient="records")}))
        return
    t = Table(title=f"{config}: per part (raw block sums)")
    t.add_column("part")
    t.add_column("ms", justify="right")
    for row in p.by_part().to_dict(orient="records"):
        t.add_row(row["part"], f"{row['estimate_ms']:.3f}")
    console.print(t)
    label = "calibrated" if p.calibrated else "uncalibrated (table has no calibration)"
    console.print(f"predicted {p.predicted_ms:.3f} ms ({label}; block sum {p.sum_ms:.3f} ms, "
                  f"{p.madds / 1e9:.3f} GMAdds, {p.mac_bytes / 1e6:.1f} MB mac_bytes)"
                  + (f"; {len(p.measured_now)} block(s) timed now" if p.measured_now else ""))


@lut_app.command("check")
def check_cmd(
    lut: Path = typer.Option(..., "--lut", help="Latency table file."),
    n: int = typer.Option(50, "--n", help="Random architectures to measure end to end."),
    space: Path = typer.Option(None, help="Search space (default: the one the table was built from)."),
    seed: int = typer.Option(CHECK_SEED, help="Sampling seed."),
    rounds: int = typer.Option(None, help="Interleaved rounds (default: the table's protocol)."),
    backend: str = backend_option(None, note="Default: the table's; another is an error."),
    device: str = device_option(None, note="Default: the table's; another is an error."),
    out: Path = typer.Option(None, help="Run folder (default results/lut-check/<timestamp>/)."),
    json_out: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Accuracy of a table here: % within ±5/±10 %, MAPE, Spearman, Kendall (raw sum and calibrated)."""
    positive_int(n, "--n")
    if rounds is not None:
        positive_int(rounds, "--rounds")
    if out is not None:
        output_dir(out, "--out")
    table = LatencyTable.load(lut)
    r = check_table(table, source=table_source(table, space), n=n, seed=seed, rounds=rounds, backend=backend,
                    device=device, out=out)
    if json_out:
        console.print_json(json.dumps(r.to_json(), default=str))
        return
    t = Table(title=f"{lut}: {n} random architectures measured end to end ({r.table['estimator']})")
    for col in ("predictor", "within ±5 %", "within ±10 %", "MAPE %", "Spearman ρ", "Kendall τ"):
        t.add_column(col, justify="left" if col == "predictor" else "right")
    for row in r.metrics.to_dict(orient="records"):
        t.add_row(row["predictor"], f"{row['within_5_pct']:.0f}%", f"{row['within_10_pct']:.0f}%",
                  f"{row['mape_pct']:.1f}", f"{row['spearman']:.3f}", f"{row['kendall']:.3f}")
    console.print(t)
    console.print(f"saved to {r.run_dir}")


def register(app: typer.Typer) -> None:
    app.add_typer(lut_app, name="lut")
