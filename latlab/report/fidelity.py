"""Fidelity page, and the "how far to trust this front" block of the search page.

Reads ``fidelity`` runs (``latlab fidelity run``, :mod:`latlab.search.fidelity_run`): ``fidelity.csv`` (one
row per estimator: Kendall τ, Spearman ρ with CIs, cost, beats_params), ``estimates.csv`` (score per
estimator × architecture) and ``reference.csv`` (reference mAP per seed). The page shows the table and one
scatter per estimator: its score against the reference mean mAP, whiskers spanning the two reference seeds,
titled with τ and its CI.

:func:`trust_text` looks the search's accuracy estimator up in the newest *shipped* fidelity table for the
study's space (``latlab/configs/fidelity/fidelity_v<N>.csv`` with its ``.json`` sidecar naming the space).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from latlab.report.figures import COLOURS, FIG_HEIGHT, add_run_header
from latlab.report.html import Page
from latlab.report.loaders import Run
from latlab.search.fidelity import CEILING, RankFidelity, ci_text, lookup, seed_columns
from latlab.search.reference import data_identity, versioned_files

FIDELITY_DIR = Path(__file__).resolve().parent.parent / "configs" / "fidelity"
DEFAULT_ESTIMATOR = "train"


def _fmt_table(table: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for r in table.to_dict(orient="records"):
        cost = r.get("cost_s_per_candidate")
        rows.append({"estimator": r["estimator"], "kind": r["kind"], "n": r["n"],
                     "Kendall τ [95 % CI]": ci_text("τ", r["kendall_tau"], r["tau_ci_low"], r["tau_ci_high"])
                     .removeprefix("τ = "),
                     "Spearman ρ [95 % CI]": ci_text("ρ", r["spearman_rho"], r["rho_ci_low"], r["rho_ci_high"])
                     .removeprefix("ρ = "),
                     "CPU s / candidate": "–" if cost is None or not math.isfinite(float(cost)) else f"{float(cost):.3g}",
                     "beats params": "–" if pd.isna(r.get("beats_params")) else str(r["beats_params"])})
    return pd.DataFrame(rows)


def scatter(est: pd.DataFrame, reference: pd.DataFrame | None, name: str, fid: RankFidelity | None) -> go.Figure:
    """Score of one estimator vs the reference mean mAP; whiskers: the reference seeds' min and max."""
    d = est[est["estimator"] == name].copy()
    y = pd.to_numeric(d["map_mean"], errors="coerce") if "map_mean" in d.columns else pd.Series(np.nan, index=d.index)
    err = None
    if reference is not None and "name" in reference.columns:
        seeds = seed_columns(reference)
        if seeds:
            r = reference.set_index("name")[seeds].astype(float)
            lo, hi = r.min(axis=1), r.max(axis=1)
            if y.isna().all() and "map_mean" in reference.columns:
                y = d["name"].map(reference.set_index("name")["map_mean"])
            err = {"type": "data", "symmetric": False, "thickness": 1.2, "width": 3,
                   "array": (d["name"].map(hi) - y).clip(lower=0).fillna(0).tolist(),
                   "arrayminus": (y - d["name"].map(lo)).clip(lower=0).fillna(0).tolist()}
    seed_role = d["role"].eq("seed") if "role" in d.columns else pd.Series(False, index=d.index)
    fig = go.Figure(go.Scatter(
        x=d["score"], y=y, mode="markers+text", text=d["name"], textposition="top center", error_y=err,
        marker={"size": 9, "color": [COLOURS[1] if s else COLOURS[0] for s in seed_role]},
        hovertemplate="%{text}<br>score %{x:.4g}<br>reference mAP %{y:.4f}<extra></extra>"))
    score = pd.to_numeric(d["score"], errors="coerce")
    log = bool(len(score) and (score > 0).all() and score.max() / score.min() > 100)
    title = f"{name}: Kendall {fid.tau_text()}" if fid else name
    fig.update_layout(title=title, height=FIG_HEIGHT, xaxis_title=f"{name} score (higher = predicted better)",
                      xaxis_type="log" if log else None, yaxis_title="reference mAP50-95 (mean of seeds)",
                      margin={"t": 50}, showlegend=False)
    return fig


def build(page: Page, runs: list[Run]) -> None:
    """One section per fidelity run: the table, the data-separation numbers, a scatter per estimator."""
    for run in runs:
        page.heading(f"Accuracy-estimator fidelity · {run.path.name}")
        add_run_header(page, run)
        table = run.table("fidelity")
        if table is None or "kendall_tau" not in table.columns:
            page.note(f"{run.path} has no fidelity.csv (a table with estimator, kendall_tau, ...).", warn=True)
            continue
        n = run.meta.get("n_archs", int(table["n"].max()) if len(table) else 0)
        page.paragraph(f"Rank agreement of each estimator with reference trainings of {n} architectures "
                       f"(reference set {run.meta.get('reference_set', '?')}, space {run.meta.get('space', '?')}). "
                       "Kendall τ-b and Spearman ρ with 95 % percentile-bootstrap CIs (architectures resampled). "
                       "noise_ceiling: reference seed 0 against seed 1 — no estimator is expected above it.")
        sep = run.meta.get("separation")
        if isinstance(sep, dict) and sep.get("seed_sd") is not None:
            page.note(f"Data separation: spread of reference mAP {sep['spread_range']:.4f} (max − min) vs "
                      f"seed-to-seed sd {sep['seed_sd']:.4f}: {sep['range_ratio']:.1f}× (the issue asks ≥ 3×).",
                      warn=not (isinstance(sep.get("range_ratio"), float) and sep["range_ratio"] >= 3))
        page.table(_fmt_table(table), caption="cost = CPU seconds per candidate; beats params = τ above the "
                   "#params baseline's τ.")
        est = run.table("estimates")
        if est is None or not {"estimator", "name", "score"} <= set(est.columns):
            page.note("no estimates.csv: scatters not drawn.", warn=True)
            continue
        reference = run.table("reference")
        for name in dict.fromkeys(est["estimator"].astype(str)):
            if name == CEILING:
                continue
            fid = lookup(table, name)
            page.figure(scatter(est, reference, name, fid), name=f"fid-{name}",
                        caption=f"{name}: Kendall {fid.tau_text() if fid else 'τ n/a'}. Each point one reference "
                        "architecture (red: seed detectors); whiskers span the reference seeds.")


# ------------------------------------------------------------------------------------- search trust block
def shipped_table(space_hash: str | None, folder: Path | None = None, choices_hash: str | None = None,
                  data: tuple[str, str, Any] | None = None) -> tuple[pd.DataFrame, dict[str, Any], Path] | None:
    """The ``fidelity_v<N>.csv`` in ``folder`` (default :data:`FIDELITY_DIR`) whose sidecar names ``space_hash``
    (or, failing that, ``choices_hash``: the same space with another class count), or None. Among several, one
    whose reference trained on ``data`` (data, preset, imgsz: :func:`data_identity`) wins, then the newest."""
    folder = Path(folder) if folder is not None else FIDELITY_DIR
    if not (space_hash or choices_hash) or not folder.is_dir():
        return None
    matches: list[tuple[pd.DataFrame, dict[str, Any], Path]] = []
    for p in versioned_files(folder, "fidelity"):
        side = p.with_suffix(".json")
        try:
            meta = json.loads(side.read_text()) if side.is_file() else {}
        except json.JSONDecodeError:
            continue
        if (space_hash and meta.get("space_hash") == space_hash) or (
                choices_hash and meta.get("choices_hash") == choices_hash):
            try:
                matches.append((pd.read_csv(p), meta, p))
            except (pd.errors.EmptyDataError, pd.errors.ParserError):
                continue
    same_data = [m for m in matches if data is not None and data_identity(m[1].get("protocol") or {}) == data]
    return (same_data or matches or [None])[0]


def estimator_of(meta: dict[str, Any], trials: pd.DataFrame | None = None) -> str:
    """The study's accuracy estimator: ``meta["accuracy_estimator"]``, else the trials' column, else train."""
    name = meta.get("accuracy_estimator")
    if not name and trials is not None and "accuracy_estimator" in trials.columns:
        vals = trials["accuracy_estimator"].dropna()
        name = str(vals.iloc[0]) if len(vals) else None
    if isinstance(name, dict):  # the study stores the estimator's identity: {"estimator": ..., "arg": ...}
        name = name.get("estimator", "") + (f":{name['arg']}" if name.get("arg") else "")
    return str(name) if name else DEFAULT_ESTIMATOR


def trust_text(meta: dict[str, Any], trials: pd.DataFrame | None = None, folder: Path | None = None
               ) -> tuple[str, bool]:
    """(text, trusted): the estimator and its measured τ with CI for this space, or that it is not measured;
    ``trusted`` is False when unmeasured or when its τ does not beat the #params baseline's."""
    name = estimator_of(meta, trials)
    budget = meta.get("train_budget") or {}
    found = shipped_table(meta.get("space_hash"), folder, meta.get("choices_hash"),
                          data_identity(budget) if budget else None)
    if found is None:
        return (f"Accuracy estimator: {name}. Its rank fidelity is not measured yet for this space "
                f"(space {meta.get('space_name') or meta.get('space_hash') or 'unknown'}; `latlab fidelity run` "
                "measures it), so the front's accuracy order is unverified."), False
    table, side, path = found
    epochs = budget.get("epochs")
    own_budget = lookup(table, f"{name}@{epochs}ep") if epochs else None  # the row of this study's epochs
    fid = own_budget or lookup(table, name) or lookup(table, name.partition(":")[0])
    if fid is None:
        return (f"Accuracy estimator: {name}. Its rank fidelity is not measured yet for this space "
                f"({path.name} has no row for it)."), False
    ceiling = lookup(table, CEILING)
    extra = f"; noise ceiling {ceiling.tau_text()}" if ceiling else ""
    params = lookup(table, "params")
    vs = f"; #params baseline {params.tau_text()}" if params else ""
    proto = side.get("protocol") or {}
    how = (f", each trained {proto['epochs']} epochs at {proto['imgsz']} px on {proto['n_train']} images"
           if {"epochs", "imgsz", "n_train"} <= set(proto) else "")
    weak = params is not None and name != "params" and not fid.kendall_tau > params.kendall_tau
    warn = (" It does not beat the #params baseline here: ranking candidates by parameter count would be as "
            "trustworthy." if weak else "")
    label = f"{name} ({epochs} epochs per candidate)" if own_budget else name
    return (f"Accuracy estimator: {label}. Kendall {fid.tau_text()} (95 % CI) against reference trainings of "
            f"{fid.n} architectures of this space{how} ({path.name}{extra}{vs}). τ = 1 would mean the estimator "
            "orders candidates exactly as the long trainings do; read the front's accuracy differences with "
            f"that in mind.{warn}{_data_clause(meta, proto)}"), not weak


def _data_clause(meta: dict[str, Any], proto: dict[str, Any]) -> str:
    """A sentence when the study trains on other data or another image size than the reference did."""
    budget = meta.get("train_budget") or {}
    ours, theirs = data_identity(budget), data_identity(proto)
    if not budget or ours == theirs:
        return ""
    def what(d: tuple[str, str, Any]) -> str:
        return (f"{d[1] if d[0] == 'builtin' else d[0]} at {d[2]} px")
    return (f" This study trains on {what(ours)}, the reference on {what(theirs)}: the τ describes the estimator "
            "on the reference's data, not necessarily on this study's.")


def add_trust_block(page: Page, meta: dict[str, Any], trials: pd.DataFrame | None = None,
                    folder: Path | None = None) -> None:
    """The "How far to trust this front" block of the search page."""
    text, trusted = trust_text(meta, trials, folder)
    page.heading("How far to trust this front", level=3)
    page.note(text, warn=not trusted)
