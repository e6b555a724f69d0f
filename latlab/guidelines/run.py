"""Run the guideline micro-benchmarks (G1-G4) on this device and put them beside the paper's numbers.

``run_guidelines`` is the one call behind ``latlab guidelines`` (and what notebooks use): for each asked
guideline it builds every row of the paper's table at each width multiplier, counts it (madds, flops,
mac_bytes from ``latlab.profiling.counter``), measures all configurations of that table (all widths) in the
same interleaved rounds (``latlab.profiling.compare.run_interleaved``, low-percentile estimator), takes each
row's ratio to the baseline row with a paired bootstrap CI (``compare.ratio_ci``), normalises paper and
measurement to the baseline row and decides a verdict (``latlab.guidelines.verdict``).

Several backends (``backend="torch,onnxruntime-int8,openvino"``) run every table once per backend, each
backend's configurations interleaved as above, into one result: the tables hold every backend's rows
(``backend`` / ``precision`` columns), the verdicts one set per backend, and
:meth:`GuidelineResults.verdict_matrix` puts them side by side. Every backend is checked (known, installed,
runs on the device) before any timing. A configuration a backend cannot convert or run (a quantizer
refusing a grouped conv, say) becomes a row with NaN latency and the reason in ``not_measured``, left out
of that backend's verdict; the run goes on.

Columns of each per-guideline table (``GuidelineResults.tables["G1"]`` …, saved as ``G1.csv`` …):

=====================  ===============================================================================
``guideline``          G1 … G4; ``table``: the paper's table number
``row``, ``key``       the paper's row label and its trend key (c2/c1, g, fragments, element-wise kinds
                       removed); ``is_baseline`` marks the row everything is normalised to
``width``              width multiplier (×1/×2/×4 = the ×1 channel counts scaled: our reading)
``platform``           the paper's channel set used: ``arm`` (ARM/CPU columns) or ``gpu``
``built``, ``printed`` the configuration built and the one printed (scaled); ``exact`` False where they
                       differ (not buildable as printed), with the reason in ``note`` (``note`` also says
                       where an integer width was rounded); ``short``: a compact label of ``built``
``in_channels``        input channels; ``imgsz`` (square input) and ``batch``
``params`` …           ``params``, ``madds``, ``flops``, ``mac_bytes`` (counter, float32, whole network)
``madds_rel``          madds / baseline madds (FLOPs held fixed ⇒ ≈ 1); ``mac_rel`` likewise for mac_bytes
latency columns        ``estimator``, ``estimate_ms``, ``ci_low_ms``, ``ci_high_ms``, ``median_ms``,
                       ``p90_ms``, ``iqr_ms``, ``cv``, ``n`` (samples), ``rounds``, ``threads``,
                       ``backend``, ``precision``, ``runtime_version``, ``device``; ``compile_s``: seconds
                       the backend spent converting (compile, quantization; NaN for eager)
``throughput``         in the paper's unit ``unit``: images/s on CPU (batch × 1000 / estimate_ms),
                       batches/s on GPU (1000 / estimate_ms)
``rel_latency``        estimate / baseline estimate (same width), with ``rel_ci_low``/``rel_ci_high``:
                       95 % paired-bootstrap CI over the interleaved rounds; ``rel_latency_per_madd``
                       = rel_latency / madds_rel (the rows' small FLOPs differences taken out)
``paper_column``       the paper's column (e.g. "ARM ×1"); ``paper_throughput`` and ``paper_unit``;
                       ``paper_rel_latency`` = paper baseline throughput / row throughput
``not_measured``       why the backend could not run this configuration ("" when it was measured)
=====================  ===============================================================================

``GuidelineResults.verdicts`` has ``backend``, ``precision`` and the columns of ``verdict.VERDICT_COLUMNS``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn

from latlab.errors import ConfigError, DeviceError
from latlab.guidelines.experiments import (
    BLOCKS,
    Config,
    check_guideline,
    check_platform,
    check_width,
    configurations,
)
from latlab.guidelines.paper import CITATION, GUIDELINES, NOTES, PLATFORM_LABEL, TABLES, UNITS, WIDTHS
from latlab.guidelines.verdict import MIN_EFFECT, normalise, verdict_matrix, verdict_table
from latlab.profiling.backends import backend_names, get_backend, get_runner
from latlab.profiling.compare import InterleavedRun, ratio_ci, run_interleaved
from latlab.profiling.counter import count_model
from latlab.profiling.timer import DEFAULT_ESTIMATOR, check_estimator
from latlab.progress import ProgressReporter, as_progress, ticking
from latlab.runs import RunWriter, new_run_dir

QUICK_BUDGET_S = 12.0
FULL_BUDGET_S = 30.0
QUICK_MIN_ROUNDS = 20
FULL_MIN_ROUNDS = 40
JOB = "guidelines"

TABLE_COLUMNS = (
    "guideline", "table", "row", "key", "is_baseline", "width", "platform", "built", "short", "printed", "exact",
    "note", "in_channels", "imgsz", "batch", "params", "madds", "flops", "mac_bytes", "madds_rel", "mac_rel",
    "estimator", "estimate_ms", "ci_low_ms", "ci_high_ms", "median_ms", "p90_ms", "iqr_ms", "cv", "n",
    "rounds", "threads", "backend", "precision", "runtime_version", "device", "compile_s", "throughput", "unit",
    "rel_latency", "rel_ci_low", "rel_ci_high", "rel_latency_per_madd", "paper_column", "paper_throughput",
    "paper_unit", "paper_rel_latency", "not_measured",
)
MEASURED_COLUMNS = ("estimator", "estimate_ms", "ci_low_ms", "ci_high_ms", "median_ms", "p90_ms", "iqr_ms", "cv",
                    "n", "compile_s")
REASON_CHARS = 200


# ------------------------------------------------------------------------------ argument parsing
def parse_guidelines(only: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"G1,G3"`` / ``["g1", "G3"]`` / None (all) → ``("G1", "G3")``; unknown names raise ConfigError."""
    if only is None:
        return GUIDELINES
    items = only.split(",") if isinstance(only, str) else list(only)
    names = [s.strip() for s in items if s.strip()]
    if not names:
        raise ConfigError(f"--only names no guideline: expected a comma-separated subset of {', '.join(GUIDELINES)}")
    picked = {check_guideline(n) for n in names}
    return tuple(g for g in GUIDELINES if g in picked)


def parse_widths(widths: str | Sequence[int] | None, quick: bool = False) -> tuple[int, ...]:
    """``"1,2,4"`` / ``[1, 4]`` / None (×1 when quick, else all three) → sorted widths, each in {1, 2, 4}."""
    if widths is None:
        return (1,) if quick else WIDTHS
    items = widths.split(",") if isinstance(widths, str) else list(widths)
    out = set()
    for item in items:
        text = str(item).strip().lower().removeprefix("x").removeprefix("×")
        try:
            value = int(text)
        except ValueError:
            raise ConfigError(f"width multiplier '{item}' is not an integer: expected one of "
                              f"{', '.join(map(str, WIDTHS))}") from None
        out.add(check_width(value))
    if not out:
        raise ConfigError(f"--width names no width: expected a subset of {', '.join(map(str, WIDTHS))}")
    return tuple(sorted(out))


def parse_backends(backend: str | Sequence[str]) -> tuple[str, ...]:
    """``"torch,openvino"`` / ``["torch", "openvino"]`` → ``("torch", "openvino")`` (order kept, repeats
    dropped); names are checked against the registry by :func:`check_backends`."""
    items = backend.split(",") if isinstance(backend, str) else list(backend)
    names = tuple(dict.fromkeys(s.strip() for s in items if s.strip()))
    if not names:
        raise ConfigError(f"--backend names no backend: expected a comma-separated list of "
                          f"{', '.join(backend_names())}")
    return names


def check_backends(backends: Sequence[str], device: str, threads: int) -> None:
    """Create each backend's runner once, so an unknown name, a missing extra or an unsupported device is a
    one-line error before anything is timed."""
    for name in backends:
        get_runner(name, device, threads=threads)


def resolve_threads(threads: int | str) -> int:
    """``1``, ``"4"``, or ``"all"`` / ``0`` (every core, ``os.cpu_count()``) → a positive thread count."""
    if isinstance(threads, str):
        if threads.strip().lower() == "all":
            return os.cpu_count() or 1
        try:
            threads = int(threads)
        except ValueError:
            raise DeviceError(f"--threads '{threads}' is not a number: expected a positive integer or 'all'") from None
    if threads == 0:
        return os.cpu_count() or 1
    if threads < 0:
        raise DeviceError(f"--threads must be a positive integer or 'all', got {threads}")
    return int(threads)


# ------------------------------------------------------------------------------------- results
@dataclass
class GuidelineResults:
    """Per-guideline DataFrames (columns in the module docstring), verdicts, and how they were made.

    ``substitutions``: configurations that could not be built as printed and what was built instead;
    ``config_notes``: other adjustments (integer rounding of a width); ``warnings``: from the timing engine.
    """

    tables: dict[str, pd.DataFrame]
    verdicts: pd.DataFrame
    settings: dict[str, Any]
    substitutions: list[str] = field(default_factory=list)
    config_notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def combined(self) -> pd.DataFrame:
        """All guideline tables in one DataFrame (every backend's rows, told apart by ``backend``)."""
        return pd.concat(list(self.tables.values()), ignore_index=True) if self.tables else pd.DataFrame()

    @property
    def backends(self) -> tuple[str, ...]:
        """The backends measured, in run order."""
        return tuple(self.settings.get("backends") or [self.settings.get("backend", "torch")])

    def verdict_matrix(self) -> pd.DataFrame:
        """Guideline × width rows, one verdict column per backend (``verdict.verdict_matrix``)."""
        return verdict_matrix(self.verdicts)

    def not_measured(self) -> list[str]:
        """``"<backend> <guideline> <row> ×<width>: <reason>"`` for every configuration a backend could not run."""
        df = self.combined()
        if df.empty:
            return []
        missing = df[df["not_measured"].astype(str) != ""]
        return [f"{r['backend']} {r['guideline']} {r['row']} ×{r['width']}: {r['not_measured']}"
                for r in missing.to_dict(orient="records")]

    def side_by_side(self, guideline: str) -> pd.DataFrame:
        """The normalised comparison of one table: one row per (row, width), paper next to measurement."""
        df = self.tables[guideline]
        cols = ["row", "width", "built", "madds", "mac_bytes", "mac_rel", "estimate_ms", "rel_latency",
                "rel_ci_low", "rel_ci_high", "paper_rel_latency", "throughput", "paper_throughput"]
        return df[cols].copy()

    def meta(self) -> dict[str, Any]:
        several = len(self.backends) > 1
        return {"citation": CITATION, "notes": NOTES, "settings": self.settings,
                "substitutions": self.substitutions, "config_notes": self.config_notes, "warnings": self.warnings,
                "not_measured": self.not_measured(), "elapsed_s": round(self.elapsed_s, 2),
                "verdicts": {f"{r['backend'] + ' ' if several else ''}{r['guideline']} ×{r['width']}": r["verdict"]
                             for r in self.verdicts.to_dict(orient="records")}}

    def save(self, out: Path | str | None = None) -> Path:
        """Write ``G1.csv`` … ``verdicts.csv`` and ``meta.json`` to ``out`` (default a new run folder)."""
        path = Path(out) if out is not None else new_run_dir(JOB)
        writer = RunWriter(path, JOB, threads=self.settings.get("threads"), device=self.settings.get("device", "cpu"))
        for g, df in self.tables.items():
            writer.save_table(df, g)
        writer.save_table(self.verdicts, "verdicts")
        if len(self.backends) > 1:
            writer.save_table(self.verdict_matrix(), "verdict_matrix")
        writer.write_meta(**self.meta())
        return path

    def to_json(self) -> dict[str, Any]:
        out = {"meta": self.meta(),
               "tables": {g: _records(df) for g, df in self.tables.items()},
               "verdicts": _records(self.verdicts)}
        if len(self.backends) > 1:
            out["verdict_matrix"] = _records(self.verdict_matrix())
        return out


# ------------------------------------------------------------------------------------- running
def _counts(model: nn.Module, shape: tuple[int, ...]) -> dict[str, int]:
    totals = count_model(model, input_shape=shape).totals
    return {k: totals[k] for k in ("params", "madds", "flops", "mac_bytes")}


def _reason(exc: BaseException) -> str:
    """An exception as one short line: ``Type: first line of the message``."""
    text = str(exc).strip().splitlines()
    line = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    return line if len(line) <= REASON_CHARS else line[:REASON_CHARS - 1] + "…"


def refusal(model: nn.Module, example_input: torch.Tensor, *, backend: str, device: str, threads: int) -> str:
    """Why ``backend`` cannot convert or run ``model`` (its error in one line), or "" when one call works."""
    runner = get_runner(backend, device, threads=threads)
    try:
        with runner.session():
            runner.time_call(runner.prepare(model, example_input))
    except Exception as exc:  # any runtime's conversion or execution error: it is the reason recorded
        return _reason(exc)
    return ""


def time_table(models: dict[str, nn.Module], inputs: dict[str, torch.Tensor], *, backend: str, device: str,
               threads: int, **timing: Any) -> tuple[InterleavedRun | None, dict[str, str]]:
    """Time one table's configurations interleaved on ``backend``; the ones it cannot run are left out.

    Returns the run (None when nothing could be timed) and ``{configuration: reason}`` for those left out.
    Only when the interleaved run fails is each configuration tried alone (:func:`refusal`) to find which;
    the rest are timed again. A failure no single configuration explains marks them all with its reason.
    """
    kw = {"backend": backend, "device": device, "threads": threads, **timing}
    try:
        return run_interleaved(models, inputs, **kw), {}
    except Exception as exc:  # a runtime refusing one network must not end the run: find which one
        why = _reason(exc)
    refused = {n: r for n in models if (r := refusal(models[n], inputs[n], backend=backend, device=device,
                                                      threads=threads))}
    rest = [n for n in models if n not in refused]
    if not refused or not rest:
        return None, {**dict.fromkeys(models, why), **refused}
    try:
        return run_interleaved({n: models[n] for n in rest}, {n: inputs[n] for n in rest}, **kw), refused
    except Exception as exc:  # the rest fail together too: nothing of this table is measured
        return None, {**dict.fromkeys(rest, _reason(exc)), **refused}


def _table(guideline: str, configs: list[Config], counts: dict[str, dict[str, int]], run: InterleavedRun | None,
           refused: dict[str, str], *, backend: str, imgsz: int, batch: int, device: str, threads: int,
           estimator: str) -> pd.DataFrame:
    unit = "batches/s" if device == "cuda" else "images/s"
    spec = get_backend(backend)
    rows = []
    for cfg in configs:
        paper_row = TABLES[guideline].row(cfg.row)
        rows.append({
            "guideline": guideline, "table": TABLES[guideline].table, "row": cfg.row, "key": cfg.key,
            "is_baseline": cfg.is_baseline, "width": cfg.width, "platform": cfg.platform,
            "built": cfg.describe("spec"), "short": cfg.short, "printed": cfg.describe("printed"), "exact": cfg.exact,
            "note": cfg.note, "in_channels": cfg.in_channels, "imgsz": imgsz, "batch": batch,
            **counts[cfg.name],
            **dict.fromkeys(MEASURED_COLUMNS, math.nan), "estimator": estimator,
            "rounds": run.rounds if run is not None else 0, "threads": threads, "backend": backend,
            "precision": spec.precision, "runtime_version": spec.runtime_version(), "device": device,
            "throughput": math.nan, "unit": unit, "rel_ci_low": math.nan, "rel_ci_high": math.nan,
            "paper_column": f"{PLATFORM_LABEL[guideline][cfg.platform]} ×{cfg.width}",
            "paper_throughput": paper_row.value(cfg.platform, cfg.width), "paper_unit": UNITS[cfg.platform],
            "not_measured": refused.get(cfg.name, ""),
            **(_measured(cfg, configs, run, batch=batch, unit=unit, estimator=estimator)
               if run is not None and cfg.name in run.measurements else {}),
        })
    return normalise(pd.DataFrame(rows))[list(TABLE_COLUMNS)]


def _measured(cfg: Config, configs: list[Config], run: InterleavedRun, *, batch: int, unit: str,
              estimator: str) -> dict[str, Any]:
    """The latency columns of one measured configuration, its ratio CI against its width's baseline."""
    m = run.measurements[cfg.name]
    base = next(c for c in configs if c.width == cfg.width and c.is_baseline)
    lo, hi = (1.0, 1.0) if cfg.is_baseline else (math.nan, math.nan)
    if not cfg.is_baseline and base.name in run.samples:
        _, lo, hi = ratio_ci(run.samples[cfg.name], run.samples[base.name], estimator)
    return {"estimator": m.estimator, "estimate_ms": m.estimate_ms, "ci_low_ms": m.ci_low_ms,
            "ci_high_ms": m.ci_high_ms, "median_ms": m.median_ms, "p90_ms": m.p90_ms, "iqr_ms": m.iqr_ms,
            "cv": m.cv, "n": m.n, "threads": m.threads, "precision": m.precision,
            "runtime_version": m.runtime_version, "compile_s": m.compile_s,
            "throughput": 1000.0 / m.estimate_ms * (batch if unit == "images/s" else 1),
            "rel_ci_low": lo, "rel_ci_high": hi}


def run_guidelines(only: str | Sequence[str] | None = None, *, quick: bool = False, device: str = "cpu",
                   backend: str | Sequence[str] = "torch", threads: int | str = 1, widths: str | Sequence[int] | None = None,
                   imgsz: int = 56, batch: int = 1, platform: str | None = None, budget_s: float | None = None,
                   estimator: str = DEFAULT_ESTIMATOR, min_effect: float = MIN_EFFECT, merge: str = "concat",
                   blocks: int = BLOCKS, seed: int = 0,
                   progress: bool | ProgressReporter = True) -> GuidelineResults:
    """Measure the asked guideline tables on this device and decide a verdict per guideline and width.

    ``quick``: ×1 only (unless ``widths`` is given), ``QUICK_BUDGET_S`` seconds of timing per table.
    ``threads``: intra-op threads (1 like the paper's ARM; ``"all"`` = every core). ``platform``: the paper's
    channel set and columns to use, ``"arm"`` (default on CPU) or ``"gpu"`` (default on CUDA). ``budget_s``:
    seconds of interleaved timing per table (default ``QUICK_BUDGET_S`` / ``FULL_BUDGET_S`` × widths).
    ``batch``: 1 on both platforms by default (see ``paper.NOTES["batch_gpu"]`` for why on GPU).
    ``backend``: one backend or several (``"torch,onnxruntime-int8"`` or a list): every table is timed once
    per backend, each with ``budget_s``, into one result with one verdict set per backend.
    """
    t_start = time.perf_counter()
    guidelines = parse_guidelines(only)
    ws = parse_widths(widths, quick)
    n_threads = resolve_threads(threads)
    check_estimator(estimator)
    if imgsz < 1:
        raise ConfigError(f"--imgsz must be a positive integer, got {imgsz}")
    if batch < 1:
        raise ConfigError(f"--batch must be a positive integer, got {batch}")
    backends = parse_backends(backend)
    check_backends(backends, device, n_threads)  # fail early: no GPU, a missing extra, bad names
    plat = check_platform(platform or ("gpu" if device == "cuda" else "arm"))
    budget = budget_s if budget_s is not None else (QUICK_BUDGET_S if quick else FULL_BUDGET_S * len(ws))
    if budget <= 0:
        raise ConfigError(f"budget must be positive, got {budget}")
    min_rounds = QUICK_MIN_ROUNDS if quick else FULL_MIN_ROUNDS

    plan = {g: [c for w in ws for c in configurations(g, w, plat, blocks=blocks, merge=merge)] for g in guidelines}
    n_configs = sum(len(c) for c in plan.values())
    notes: list[str] = []
    substitutions = [f"{c.name}: {c.note}" for cs in plan.values() for c in cs if not c.exact]
    config_notes = [f"{c.name}: {c.note}" for cs in plan.values() for c in cs if c.exact and c.note]
    gen = torch.Generator().manual_seed(seed)
    reporter = as_progress(progress)
    several = len(backends) > 1
    parts: dict[str, list[pd.DataFrame]] = {g: [] for g in plan}
    # one step per counted configuration and per timed one (per backend); a second bar follows each time budget
    with reporter.task("guidelines", (1 + len(backends)) * n_configs,
                       show=("description", "bar", "count", "elapsed")) as bar:
        for g, configs in plan.items():
            models: dict[str, nn.Module] = {}
            inputs: dict[str, torch.Tensor] = {}
            counts: dict[str, dict[str, int]] = {}
            for cfg in configs:
                torch.manual_seed(seed)
                models[cfg.name] = cfg.build()
                shape = (batch, cfg.in_channels, imgsz, imgsz)
                inputs[cfg.name] = torch.randn(shape, generator=gen)
                counts[cfg.name] = _counts(models[cfg.name], shape)
                bar.advance(description=f"built + counted {cfg.name}")
            for b in backends:
                on = f" on {b}" if several else ""
                with reporter.task(f"timing {g}{on} ({len(configs)} configurations)", budget) as clock, \
                        ticking(clock, budget):
                    run, refused = time_table(models, inputs, backend=b, device=device, threads=n_threads,
                                              budget_s=budget, min_rounds=min_rounds, estimator=estimator,
                                              seed=seed, progress=False)
                bar.advance(len(configs), description=f"timed {g}{on}")
                prefix = f"{b} {g}" if several else g
                notes.extend(f"{prefix}: {w}" for w in (run.warnings if run is not None else []))
                parts[g].append(_table(g, configs, counts, run, refused, backend=b, imgsz=imgsz, batch=batch,
                                       device=device, threads=n_threads, estimator=estimator))
    tables = {g: pd.concat(dfs, ignore_index=True) for g, dfs in parts.items()}
    combined = pd.concat(list(tables.values()), ignore_index=True)
    verdicts = verdict_table(combined, min_effect=min_effect)
    settings = {"guidelines": list(guidelines), "widths": list(ws), "quick": quick, "device": device,
                "backend": ",".join(backends), "backends": list(backends), "threads": n_threads, "imgsz": imgsz, "batch": batch, "platform": plat,
                "budget_s_per_table": budget, "min_rounds": min_rounds, "estimator": estimator,
                "min_effect": min_effect, "g3_merge": merge, "blocks": blocks, "seed": seed}
    return GuidelineResults(tables, verdicts, settings, substitutions, config_notes, list(dict.fromkeys(notes)),
                            time.perf_counter() - t_start)


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-safe dicts (NaN → None)."""
    return json.loads(df.to_json(orient="records"))
