"""``run_fidelity``: score the reference set with each accuracy estimator and write the fidelity run folder.

The library call behind ``latlab fidelity run`` and ``benchmarks/bench_fidelity.py``. Estimators are looked
up by name in the registry (:func:`latlab.search.estimators.make_estimator`) and all built before any work,
so a wrong name fails at once. The naive baselines ``params``, ``madds`` and ``mac_bytes`` are counted here
(one meta-tensor count per architecture, :func:`latlab.profiling.counter.count_model`) and enter the table
like any estimator (kind ``baseline``, score = the count, cost = the count's CPU time).

The run folder (``results/fidelity/<time>/``) holds ``fidelity.csv`` (:data:`latlab.search.fidelity.
TABLE_COLUMNS`), ``estimates.csv`` (one row per estimator × architecture: ``estimator``, ``kind``, ``name``,
``role``, ``score``, ``cost_s``, ``map``, ``map_mean``), ``reference.csv`` (the reference table) and
``meta.json`` (reference files, protocol, space, data separation, noise ceiling).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from latlab.appendfile import append_line, repair_tail
from latlab.errors import ConfigError
from latlab.ops.builder import build_model
from latlab.runs import RESULTS_ROOT, RunWriter, new_run_dir
from latlab.search.estimators import (
    EstimatorContext,
    get_estimator_class,
    list_estimators,
    make_estimator,
    parse_estimator,
)
from latlab.search.estimators.base import cpu_clock
from latlab.search.fidelity import N_BOOT, fidelity_table, noise_ceiling, seed_columns
from latlab.search.objectives import count_candidate
from latlab.search.reference import (
    DEFAULT_RESULTS,
    DEFAULT_SET,
    FIDELITY_DIR,
    DataSeparation,
    ReferenceArch,
    ReferenceProtocol,
    ReferenceSet,
    data_separation,
    load_reference_set,
    read_protocol,
    reference_table,
)
from latlab.search.space import load_space

BASELINES = ("params", "madds", "mac_bytes")
DEFAULT_PUBLISHED = FIDELITY_DIR / "fidelity_v1.csv"
PUBLISHED_META_KEYS = ("reference_set", "space", "space_hash", "choices_hash", "protocol", "n_archs", "n_boot", "separation",
                       "noise_ceiling", "time", "fingerprint", "estimators")
JOB = "fidelity"
DEFAULT_CACHE = RESULTS_ROOT / JOB / "estimates-cache.csv"  # reused across fidelity runs
Progress = Callable[[str], None]


def default_estimators() -> list[str]:
    """Every registered estimator that needs no argument, the baselines excepted (they are always added)."""
    return [s.name for s in list_estimators() if not s.arg_required and s.name not in BASELINES]


TRAIN_BUDGET_SHARE = 4  # the reference trains >= 4x longer than the estimators that train


def context_for(protocol: ReferenceProtocol, ref: ReferenceSet, train_epochs: int | None = None
                ) -> EstimatorContext:
    """The estimator context matching the reference protocol's data, image size and classes; estimators that
    train get ``train_epochs`` (default: the reference's epochs / 4, at least 1)."""
    epochs = train_epochs or max(1, protocol.epochs // TRAIN_BUDGET_SHARE)
    return EstimatorContext(data=protocol.data, data_kwargs=protocol.data_kwargs(),
                            imgsz=protocol.imgsz, nc=protocol.nc(ref.nc), seed=0, epochs=epochs, batch=protocol.batch,
                            val_max_images=protocol.val_max_images, threads=protocol.threads)


def baseline_rows(archs: Sequence[ReferenceArch], imgsz: int) -> list[dict[str, Any]]:
    """``params``, ``madds`` and ``mac_bytes`` of each architecture (kind ``baseline``)."""
    rows = []
    for a in archs:
        with cpu_clock() as cpu:
            totals = count_candidate(build_model(dict(a.cfg), imgsz=imgsz), imgsz)
            cost = cpu()
        rows += [{"estimator": b, "kind": "baseline", "name": a.name, "role": a.role, "score": float(totals[b]),
                  "cost_s": cost, "map": float("nan")} for b in BASELINES]
    return rows


ESTIMATE_COLUMNS = ["estimator", "kind", "name", "role", "score", "cost_s", "map"]
CACHE_COLUMNS = ["context", "arch_hash", *ESTIMATE_COLUMNS]


def context_key(ctx: EstimatorContext) -> str:
    """12 hex digits over everything in ``ctx``: cached scores are reused only for the same context (the
    default eager ``accuracy_backend`` left out, so caches written before it existed still match)."""
    fields = {k: v for k, v in asdict(ctx).items() if not (k == "accuracy_backend" and v == "torch")}
    blob = json.dumps(fields | {"data": str(ctx.data)}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def read_cache(path: Path | str | None, ctx: EstimatorContext) -> dict[tuple[str, str], dict[str, Any]]:
    """Cached estimates of ``ctx`` by (estimator, arch_hash); unreadable (e.g. half-written) lines are skipped."""
    if path is None or not Path(path).is_file() or Path(path).stat().st_size == 0:
        return {}
    df = pd.read_csv(path, on_bad_lines="skip", dtype={"context": str, "arch_hash": str})
    df = df[df["context"] == context_key(ctx)].dropna(subset=["score"])
    return {(r["estimator"], r["arch_hash"]): r for r in df.to_dict(orient="records")}


def append_cache(path: Path | str, row: dict[str, Any]) -> None:
    """Append one estimate (a line torn by a crash is cut first), fsynced before returning."""
    repair_tail(path)
    append_line(path, pd.DataFrame([row], columns=CACHE_COLUMNS).to_csv(index=False, header=False),
                ",".join(CACHE_COLUMNS))


def collect_estimates(archs: Sequence[ReferenceArch], estimators: Sequence[str], ctx: EstimatorContext, *,
                      baselines: bool = True, progress: Progress | None = None,
                      cache: Path | str | None = None) -> pd.DataFrame:
    """Long table of every estimator's score on every architecture (see the module docstring).

    With ``cache`` (a CSV), every finished estimate is appended to it at once and estimates already there for
    the same context are reused, so a killed run (hours of ``train``) continues where it stopped."""
    made = [(text, make_estimator(text, ctx)) for text in estimators if text not in BASELINES]
    done = read_cache(cache, ctx)
    key = context_key(ctx)
    rows: list[dict[str, Any]] = []
    for text, est in made:
        for i, a in enumerate(archs, start=1):
            if (text, a.arch_hash) in done:
                rows.append({c: done[(text, a.arch_hash)][c] for c in ESTIMATE_COLUMNS} | {"name": a.name,
                                                                                          "role": a.role})
                continue
            if progress:
                progress(f"{text}: [{i}/{len(archs)}] {a.name}")
            score = est.estimate_baseline if a.role == "seed" else est.estimate  # seeds: as a search scores them
            with tempfile.TemporaryDirectory(prefix="latlab-fid-") as tmp:
                e = score(dict(a.cfg), out_dir=Path(tmp))
            rows.append({"estimator": text, "kind": est.spec.kind, "name": a.name, "role": a.role,
                         "score": float(e.score), "cost_s": float(e.cost_s),
                         "map": float("nan") if e.map is None else float(e.map)})
            if cache is not None:
                append_cache(cache, {"context": key, "arch_hash": a.arch_hash, **rows[-1]})
    if baselines:
        rows += baseline_rows(archs, ctx.imgsz)
    return pd.DataFrame(rows, columns=ESTIMATE_COLUMNS)


def set_choices_hash(ref: ReferenceSet) -> str | None:
    """The set's choices hash (what the search page matches a study with another class count by); a set written
    before sets recorded it gets the shipped space's when its space hash is that space's."""
    if ref.header.get("choices_hash"):
        return str(ref.header["choices_hash"])
    shipped = load_space(None)
    return shipped.choices_hash if shipped.space_hash == ref.header.get("space_hash") else None


@dataclass
class FidelityRun:
    """What :func:`run_fidelity` produced (and where it wrote it)."""

    path: Path | None
    table: pd.DataFrame
    estimates: pd.DataFrame
    reference: pd.DataFrame
    separation: DataSeparation
    meta: dict[str, Any]


def run_fidelity(estimators: Sequence[str] | None = None, *, reference_set: Path | str = DEFAULT_SET,
                 reference_results: Path | str = DEFAULT_RESULTS, ctx: EstimatorContext | None = None,
                 train_epochs: int | None = None, extra_train_epochs: Sequence[int] = (),
                 out_dir: Path | str | None = None, results_root: Path | str | None = None, save: bool = True,
                 baselines: bool = True, n_boot: int = N_BOOT, progress: Progress | None = None,
                 cache: Path | str | None = None) -> FidelityRun:
    """Score the trained part of the reference set with ``estimators`` (default :func:`default_estimators`),
    compute the fidelity table and (``save``) write the run folder ``out_dir`` or
    ``<results_root>/fidelity/<time>/``. ``cache``: see :func:`collect_estimates`.

    ``extra_train_epochs``: the estimators that train are also scored at these budgets, each as its own row
    named ``NAME@<E>ep`` (how fidelity grows with the per-candidate budget; the search page reads the row of a
    study's own budget when there is one)."""
    ref = load_reference_set(reference_set)
    reference = reference_table(reference_results)
    known = {a.arch_hash for a in ref.archs}
    reference = reference[reference["arch_hash"].isin(known) & reference["map_mean"].notna()].reset_index(drop=True)
    if len(reference) < 3:
        raise ConfigError(f"{reference_results}: only {len(reference)} architecture(s) of {reference_set} have "
                          "reference results; the fidelity statistics need at least 3")
    by_hash = {a.arch_hash: a for a in ref.archs}
    archs = [by_hash[h] for h in reference["arch_hash"]]
    reference["name"] = [a.name for a in archs]
    protocol = read_protocol(reference_results) or ReferenceProtocol()
    ctx = ctx or context_for(protocol, ref, train_epochs)
    names = list(estimators) if estimators is not None else default_estimators()
    est = collect_estimates(archs, names, ctx, baselines=baselines, progress=progress, cache=cache)
    trainers = [n for n in names if get_estimator_class(parse_estimator(n)[0]).spec.kind == "training"]
    for epochs in (e for e in extra_train_epochs if e != ctx.epochs):
        more = collect_estimates(archs, trainers, replace(ctx, epochs=epochs), baselines=False, progress=progress,
                                 cache=cache)
        est = pd.concat([est, more.assign(estimator=more["estimator"] + f"@{epochs}ep")], ignore_index=True)
    est["map_mean"] = est["name"].map(reference.set_index("name")["map_mean"])
    table = fidelity_table(reference, est, n_boot=n_boot)
    sep = data_separation(reference)
    meta: dict[str, Any] = {
        "reference_set": str(reference_set), "reference_results": str(reference_results),
        "space": ref.header.get("space"), "space_hash": ref.header.get("space_hash"),
        "choices_hash": set_choices_hash(ref),
        "protocol": protocol.to_dict(), "estimators": names, "extra_train_epochs": list(extra_train_epochs), "baselines": list(BASELINES) if baselines else [],
        "n_archs": len(archs), "n_boot": n_boot, "separation": asdict(sep),
        "estimator_context": {k: v for k, v in asdict(ctx).items() if k != "data"} | {"data": str(ctx.data)},
    }
    if len(seed_columns(reference)) >= 2:
        meta["noise_ceiling"] = noise_ceiling(reference, n_boot=n_boot).tau_text()
    path = None
    if save:
        path = Path(out_dir) if out_dir is not None else new_run_dir(JOB, root=results_root)
        writer = RunWriter(path, JOB, threads=ctx.threads)
        writer.save_table(table, "fidelity")
        writer.save_table(est, "estimates")
        writer.save_table(reference, "reference")
        writer.write_meta(**meta, tables=["fidelity.csv", "estimates.csv", "reference.csv"])
    return FidelityRun(path, table, est, reference, sep, meta)


def publish(run_dir: Path | str, dest: Path | str = DEFAULT_PUBLISHED) -> Path:
    """Copy a fidelity run's ``fidelity.csv`` to ``dest`` (the shipped table the search page reads) with a
    ``.json`` sidecar holding the space hash and the run's key facts (:data:`PUBLISHED_META_KEYS`)."""
    src = Path(run_dir)
    if not (src / "fidelity.csv").is_file() or not (src / "meta.json").is_file():
        raise ConfigError(f"{src}: not a fidelity run folder (needs fidelity.csv and meta.json)")
    meta = json.loads((src / "meta.json").read_text())
    out = Path(dest)
    out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src / "fidelity.csv", out)
    side = {k: meta[k] for k in PUBLISHED_META_KEYS if k in meta} | {"source_run": src.name}
    if "reference_set" in side:  # a file name, not this machine's path: the table ships with the package
        side["reference_set"] = Path(str(side["reference_set"])).name
    out.with_suffix(".json").write_text(json.dumps(side, indent=2, default=str) + "\n")
    return out
