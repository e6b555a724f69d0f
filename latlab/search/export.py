"""A search study as tables and files: the trials table, the Pareto front, one model YAML per trial.

Columns of :func:`trials_frame` (one row per trial, in trial order):

======================  ===================================================================================
``trial``               Optuna trial number
``state``               COMPLETE, PRUNED, FAIL, RUNNING, WAITING
``arch``                compact architecture string (``CBRM24/P3:mv3k5e4se-hsx2w48/...``) or
                        ``baseline:<zoo name>``
``arch_hash``           hash of the model YAML (duplicates share it)
``yaml_path``           the trial's model YAML (filled by :func:`export_study`, else empty)
``latency_ms``          latency estimate (``latency_estimator``, p10 by default) in ms
``latency_ci_low_ms``   95 % CI of that estimate; ``latency_median_ms`` the median beside it
``latency_source``      ``measured`` or ``lut:<file>``; ``threads`` the thread count used
``params`` … ``mac_bytes``  counts of one ``1×3×imgsz×imgsz`` forward
``map50``, ``map``      mAP50 and mAP50-95 of the trial's short training (NaN when not trained)
``feasible``            latency within the budget (True when there is no budget)
``baseline``            seed name for baseline trials, else empty
``pareto``              on the front of feasible finished search trials over the study's objectives
                        (``latlab.objectives``; default latency ↓, mAP ↑)
``best``                the best feasible search trial (highest mAP, then lowest latency; a study whose
                        estimator gives no mAP: highest ``accuracy_score``)
``beaten_by``           for baselines: the best-mAP search trial at least as good in every objective
                        (one strictly), else empty
``cached_from``         trial whose results a duplicate architecture reused
``retry_of``            trial an interrupted trial was retried from
``note``                why a trial was not trained, pruned or failed
``duration_s``          wall time of the trial
``point``               the sampled point (JSON)
``accuracy_estimator``  the accuracy estimator that scored the trial (``train``, ``synflow``, ``twostage``...)
``accuracy_score``      its score (higher is better; mAP50-95 for estimators that train)
``accuracy_cost_s``     CPU seconds the estimator spent on the trial
``screen_score``        a two-stage estimator's screening score (trained or not)
======================  ===================================================================================

An objective whose attribute is none of these columns (a registered custom objective) adds its column at
the end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
import pandas as pd

from latlab.runs import RunWriter, new_run_dir
from latlab.search import pareto
from latlab.search.objective_registry import DEFAULT_OBJECTIVES, Objective, resolve, study_objective_names
from latlab.search.space import to_yaml

TRIAL_COLUMNS = ["trial", "state", "arch", "arch_hash", "yaml_path", "latency_ms", "latency_ci_low_ms",
                 "latency_ci_high_ms", "latency_median_ms", "latency_estimator", "latency_source", "threads",
                 "params", "madds", "flops", "mac_bytes", "map50", "map", "feasible", "baseline", "pareto",
                 "best", "beaten_by", "cached_from", "retry_of", "note", "duration_s", "point",
                 "accuracy_estimator", "accuracy_score", "accuracy_cost_s", "screen_score"]
_NUM = ("latency_ms", "latency_ci_low_ms", "latency_ci_high_ms", "latency_median_ms", "map50", "map",
        "duration_s", "accuracy_score", "accuracy_cost_s", "screen_score")
_INT = ("params", "madds", "flops", "mac_bytes", "threads")


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def _point(t: optuna.trial.FrozenTrial) -> str:
    """The sampled values as JSON (``point`` attribute; studies before the ordinal encoding: the params)."""
    point = t.user_attrs.get("point") or t.params
    return json.dumps(point, sort_keys=True) if point else ""


def study_objectives(study: optuna.Study) -> list[Objective]:
    """The objectives of ``study``'s front (``latlab.objectives``, else latency and mAP)."""
    return resolve(study_objective_names(study.user_attrs))


def trials_frame(study: optuna.Study) -> pd.DataFrame:
    """Every trial of ``study`` with the columns documented in the module docstring."""
    objectives = study_objectives(study)
    extra = [o.attr for o in objectives if o.attr not in TRIAL_COLUMNS]
    rows = []
    for t in study.get_trials(deepcopy=False):
        a = t.user_attrs
        row: dict[str, Any] = {
            "trial": t.number, "state": t.state.name, "arch": a.get("arch", ""), "arch_hash": a.get("arch_hash", ""),
            "yaml_path": "", "latency_estimator": a.get("latency_estimator", ""),
            "latency_source": a.get("latency_source", ""), "feasible": a.get("feasible"),
            "baseline": a.get("baseline", ""), "cached_from": a.get("cached_from"), "retry_of": a.get("retry_of"),
            "note": a.get("note", ""), "point": _point(t), "accuracy_estimator": a.get("accuracy_estimator", ""),
        }
        for k in _NUM:
            row[k] = _num(a.get(k))
        for k in _INT:
            row[k] = a.get(k)
        for k in extra:
            row[k] = _num(a.get(k))
        rows.append(row)
    df = pd.DataFrame(rows, columns=[c for c in TRIAL_COLUMNS if c not in ("pareto", "best", "beaten_by")] + extra)
    for k in (*_INT, "cached_from", "retry_of"):
        df[k] = pd.array(df[k], dtype="Int64")
    df["feasible"] = df["feasible"].astype("boolean")
    df["pareto"] = pareto_mask(df, objectives)
    mode = study.user_attrs.get("latlab.mode", "pareto" if len(study.directions) > 1 else "constrained")
    best = best_trial(df, mode)
    df["best"] = df["trial"] == (best["trial"] if best else -1)
    df["beaten_by"] = pd.array([beaten_by(df, r, objectives) for _, r in df.iterrows()], dtype="Int64")
    return df[TRIAL_COLUMNS + extra]


def _resolve(objectives: Sequence[Objective] | None) -> list[Objective]:
    return list(objectives) if objectives is not None else resolve(DEFAULT_OBJECTIVES)


def accuracy_column(df: pd.DataFrame) -> str:
    """The column that ranks accuracy: ``map``, or ``accuracy_score`` when no trial has an mAP but some have a
    score (a study scored by a zero-cost proxy)."""
    if "accuracy_score" in df and df["map"].isna().all() and df["accuracy_score"].notna().any():
        return "accuracy_score"
    return "map"


def front_candidates(df: pd.DataFrame, objectives: Sequence[Objective] = ()) -> pd.DataFrame:
    """Finished, scored, feasible search trials (baselines excluded) with a value for every objective."""
    acc = accuracy_column(df)
    ok = (df["state"] == "COMPLETE") & (df["baseline"] == "") & df[acc].notna() & df["latency_ms"].notna()
    for o in objectives:
        ok &= df[o.attr].notna()
    ok &= df["feasible"].fillna(True).astype(bool)
    ok &= df["note"].fillna("").str.contains("not trained") == False  # noqa: E712 - pandas element-wise
    return df[ok]


def pareto_mask(df: pd.DataFrame, objectives: Sequence[Objective] | None = None) -> pd.Series:
    """True for search trials on the front of :func:`front_candidates` over ``objectives`` (default latency ↓,
    mAP ↑); every copy of a front point is marked."""
    objs = _resolve(objectives)
    cand = front_candidates(df, objs)
    mask = pd.Series(False, index=df.index)
    if cand.empty:
        return mask
    values = cand[[o.attr for o in objs]].to_numpy(dtype=float)
    mask[cand.index] = pareto.pareto_mask(values, [o.direction for o in objs])
    return mask


def best_trial(df: pd.DataFrame, mode: str = "constrained") -> dict[str, Any] | None:
    """The feasible search trial with the highest mAP (ties: lowest latency), as a dict, or None (no mAP in
    the study: the highest ``accuracy_score``)."""
    cand = front_candidates(df)
    if cand.empty:
        return None
    row = cand.sort_values([accuracy_column(df), "latency_ms"], ascending=[False, True]).iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def beaten_by(df: pd.DataFrame, row: pd.Series, objectives: Sequence[Objective] | None = None) -> int | None:
    """For a baseline row: the best-mAP search trial that dominates it over ``objectives`` (default: at
    ≤ its latency and ≥ its mAP, one strictly)."""
    objs = _resolve(objectives)
    cols = [o.attr for o in objs]
    acc = accuracy_column(df)
    if not row["baseline"] or any(math.isnan(_num(row[c])) for c in (acc, "latency_ms", *cols)):
        return None
    cand = front_candidates(df, objs)
    dirs = [o.direction for o in objs]
    mine = [float(row[c]) for c in cols]
    wins = [pareto.dominates(v, mine, dirs) for v in cand[cols].to_numpy(dtype=float)]
    better = cand[wins] if len(cand) else cand
    if better.empty:
        return None
    return int(better.sort_values([acc, "latency_ms"], ascending=[False, True]).iloc[0]["trial"])


def export_study(study: optuna.Study, out_dir: Path | str | None = None, *, storage: str = "",
                 root: Path | str | None = None) -> Path:
    """Write ``trials.csv``, ``pareto.csv``, ``yamls/trial_NNNNN.yaml`` and ``meta.json`` into a run folder
    (``results/search/<study>/export-<time>/`` by default) and return its path."""
    name = study.study_name
    if out_dir is None:
        out = new_run_dir(f"search/{name}", root=root, prefix="export-")
    else:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
    df = trials_frame(study)
    ydir = out / "yamls"
    ydir.mkdir(exist_ok=True)
    for t in study.get_trials(deepcopy=False):
        cfg = t.user_attrs.get("cfg")
        if not cfg:
            continue
        path = ydir / f"trial_{t.number:05d}.yaml"
        path.write_text(f"# latlab search study {name}, trial {t.number}: {t.user_attrs.get('arch', '')}\n"
                        + to_yaml(cfg))
        df.loc[df["trial"] == t.number, "yaml_path"] = str(path.relative_to(out))
    attrs = study.user_attrs
    writer = RunWriter(out, "search", threads=attrs.get("latlab.threads"), device=attrs.get("latlab.device", "cpu"))
    writer.save_table(df, "trials")
    objectives = study_objectives(study)
    front = df[df["pareto"]].sort_values(objectives[0].attr, ascending=objectives[0].direction == "minimize")
    writer.save_table(front, "pareto")
    counts = df["state"].value_counts().to_dict()
    best = best_trial(df, attrs.get("latlab.mode", "constrained"))
    acc = accuracy_column(df)  # a proxy-scored study names its accuracy column for the report
    named = {"accuracy_column": acc} if acc != "map" else {}
    writer.write_meta(study=name, storage=storage, mode=attrs.get("latlab.mode"),
                      study_fingerprint=attrs.get("latlab.fingerprint"),
                      study_hardware_key=attrs.get("latlab.hardware_key"),
                      latency_source=attrs.get("latlab.latency_source"), imgsz=attrs.get("latlab.imgsz"),
                      latency_budget_ms=attrs.get("latlab.latency_budget_ms"),
                      budget_from=attrs.get("latlab.budget_from"), budget_scale=attrs.get("latlab.budget_scale", 1.0),
                      train_budget=attrs.get("latlab.train_budget"),
                      train_devices=attrs.get("latlab.train_devices", ["cpu"]),
                      accuracy_estimator=attrs.get("latlab.accuracy_estimator",
                                                   {"estimator": "train", "arg": None}),
                      space_name=attrs.get("latlab.space_name"),
                      space_hash=attrs.get("latlab.space_hash"), choices_hash=attrs.get("latlab.choices_hash"),
                      estimator=attrs.get("latlab.estimator"),
                      states=counts, n_trials=len(df), best_trial=best["trial"] if best else None,
                      pareto_trials=[int(x) for x in front["trial"]],
                      objectives=[o.name for o in objectives],
                      objective_info={o.name: {"column": o.attr, "unit": o.unit, "direction": o.direction,
                                               "label": o.label} for o in objectives},
                      baselines=attrs.get("latlab.baselines"), tables=["trials.csv", "pareto.csv"], **named)
    return out
