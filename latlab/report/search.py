"""Search page: every trial on the latency / mAP plane, the Pareto front, hypervolume and importances.

The objectives are ``meta["objectives"]`` (names of :mod:`latlab.search.objective_registry`, written by the
export; absent: latency and mAP). Each objective beyond latency and accuracy gets its own figure (objective
vs accuracy), a column in the front table, and a dimension of the front and the hypervolume.

Reads ``search`` runs (``latlab search export``, :mod:`latlab.search.export`, written to
``results/search/<study>/export-<time>/``): ``trials.csv`` (``trial``, ``state``, ``arch``, ``yaml_path``,
``latency_ms`` with ``latency_ci_low_ms``/``latency_ci_high_ms``, ``params``, ``madds``, ``mac_bytes``,
``map50``, ``map``, ``feasible``, ``baseline``, ``pareto``), the per-trial YAML files, ``meta.json``
(``study``, ``storage``, ``latency_budget_ms``) and the Optuna storage: ``meta["storage"]`` when it names
a file or URL, else a journal (``*.log``) or SQLite file (``*.db``) in the run folder or its parent, the
study folder (``results/search/<study>/journal.log``).

Accuracy is ``map`` (mAP50-95, what the search optimises) unless ``meta["accuracy_column"]`` says
otherwise or ``map`` was never measured (then ``map50``). The front is the export's ``pareto`` column when
the accuracy is ``map``, else computed here the same way: completed, feasible, trained search trials
(baselines excluded), no other one at most as slow and at least as accurate.
"""

from __future__ import annotations

import contextlib
import math
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import plotly.graph_objects as go
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from latlab.report.fidelity import add_trust_block
from latlab.report.figures import COLOURS, FIG_HEIGHT, GREY, add_run_header
from latlab.report.html import Page
from latlab.report.loaders import TRIAL_COLUMNS, Run
from latlab.search import pareto
from latlab.search.objective_registry import OBJECTIVES_ATTR, Objective, resolve

COMPLETE = "COMPLETE"
PRUNED = "PRUNED"
BUDGET_KEYS = ("budget_ms", "latency_budget_ms", "max_latency_ms", "budget")
LATENCY_CANDIDATES = ("latency_ms", "estimate_ms", "latency_estimate_ms", "latency_p10_ms", "p10_ms",
                      "latency_median_ms", "median_ms")
MIN_IMPORTANCE_TRIALS = 4
YAML_SUFFIXES = (".yaml", ".yml")
LAT_ACC = ("minimize", "maximize")
ACCURACY_CANDIDATES = ("map", "map50", "mAP", "mAP50")  # a latlab export names its own in meta


@dataclass
class SearchColumns:
    """Which trial-table columns hold latency (and its CI) and accuracy; ``extra``: the study's further
    objectives (each read from its ``attr`` column)."""

    latency: str
    ci_low: str | None
    ci_high: str | None
    accuracy: str
    extra: list[Objective] = field(default_factory=list)

    @property
    def front_columns(self) -> list[str]:
        return [self.latency, self.accuracy, *(o.attr for o in self.extra)]

    @property
    def directions(self) -> list[str]:
        return [*LAT_ACC, *(o.direction for o in self.extra)]


def columns_of(trials: pd.DataFrame, meta: dict[str, Any]) -> SearchColumns:
    """Resolve the latency, CI and accuracy columns (``meta`` overrides, then known names)."""
    cols = list(trials.columns)
    lat = meta.get("latency_column") if meta.get("latency_column") in cols else None
    if lat is None:
        lat = next((c for c in LATENCY_CANDIDATES if c in cols), None)
    if lat is None:
        lat = next((c for c in cols if "latency" in c and c.endswith("_ms")
                    and not any(w in c for w in ("ci", "low", "high", "std", "iqr"))), None)
    if lat is None:
        raise KeyError(f"no latency column among {cols} (expected one of {', '.join(LATENCY_CANDIDATES)} "
                       "or meta['latency_column'])")
    stem = lat.removesuffix("_ms")
    low = next((c for c in (f"{stem}_ci_low_ms", "latency_ci_low_ms", "ci_low_ms") if c in cols), None)
    high = next((c for c in (f"{stem}_ci_high_ms", "latency_ci_high_ms", "ci_high_ms") if c in cols), None)
    acc = meta.get("accuracy_column") if meta.get("accuracy_column") in cols else None
    if acc is None:
        acc = next((c for c in ACCURACY_CANDIDATES if c in cols and trials[c].notna().any()), None)
    if acc is None:
        raise KeyError(f"no accuracy column among {cols} (expected one of {', '.join(ACCURACY_CANDIDATES)}, or "
                       "meta['accuracy_column'])")
    extra = extra_objectives(meta)
    missing = [o.attr for o in extra if o.attr not in cols]
    if missing:
        raise KeyError(f"objective column {missing[0]!r} (meta['objectives']) is not in the trials table")
    return SearchColumns(lat, low, high, acc, extra)


def extra_objectives(meta: dict[str, Any]) -> list[Objective]:
    """The objectives in ``meta["objectives"]`` beyond the first latency and the first accuracy objective
    (an unknown name is a KeyError, shown as a note)."""
    try:
        objs = resolve(meta.get("objectives") or ())
    except Exception as exc:
        raise KeyError(str(exc)) from None
    out, axes = [], set()
    for o in objs:
        role = o.measured_by if o.measured_by in ("latency", "training") else None
        if role is None or role in axes:
            out.append(o)
        else:
            axes.add(role)
    return out


def budget_of(meta: dict[str, Any]) -> float | None:
    for key in BUDGET_KEYS:
        v = meta.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0:
            return float(v)
    return None


def budget_text(meta: dict[str, Any], budget: float) -> str:
    """The budget, and where it came from when a baseline's measured latency set it (``--budget-from``)."""
    source = meta.get("budget_from")
    if not source:
        return f"{budget:g} ms"
    scale = float(meta.get("budget_scale") or 1.0)
    return (f"{budget:.3g} ms ({scale:g} × {source}'s measured latency)" if scale != 1.0
            else f"{budget:.3g} ms ({source}'s measured latency)")


def _bool(series: pd.Series) -> pd.Series:
    def conv(v: Any) -> bool:
        if isinstance(v, str):
            return v.strip().lower() in ("true", "1", "yes")
        return bool(v) if v == v else False

    return series.map(conv)


def prepare(trials: pd.DataFrame, cols: SearchColumns, budget: float | None) -> pd.DataFrame:
    """Normalised trial table: ``state`` upper-case, ``feasible`` and ``is_baseline`` booleans."""
    df = trials.copy()
    df["state"] = df["state"].astype(str).str.upper().str.replace("TRIALSTATE.", "", regex=False)
    if "feasible" in df.columns:
        df["feasible"] = _bool(df["feasible"])
    elif budget is not None:
        df["feasible"] = df[cols.latency] <= budget
    else:
        df["feasible"] = True
    base = df["baseline"] if "baseline" in df.columns else pd.Series([""] * len(df), index=df.index)
    df["baseline"] = base.fillna("").astype(str).replace({"nan": "", "None": "", "False": ""})
    df["is_baseline"] = df["baseline"].str.len() > 0
    return df


def pareto_mask(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """True for points no other point dominates (lower-or-equal latency and higher-or-equal accuracy,
    one strictly); ties keep the first."""
    return pareto.pareto_mask(np.column_stack([latency, accuracy]), LAT_ACC, ties="first")


def hypervolume_2d(latency: np.ndarray, accuracy: np.ndarray, ref_latency: float, ref_accuracy: float = 0.0
                   ) -> float:
    """Area dominated by the points (min latency, max accuracy) inside the box up to ``ref_latency`` and down
    to ``ref_accuracy``."""
    return pareto.hypervolume(np.column_stack([latency, accuracy]), [ref_latency, ref_accuracy], LAT_ACC)


def reference_point(df: pd.DataFrame, cols: SearchColumns, ref_latency: float) -> list[float]:
    """Hypervolume reference: ``ref_latency``, accuracy 0, and for each further objective 1.1 × its worst
    value among all trials (0 for a maximised one)."""
    ref = [ref_latency, 0.0]
    for o in cols.extra:
        worst = pd.to_numeric(df[o.attr], errors="coerce").max()
        ref.append(1.1 * float(worst) if o.direction == "minimize" and pd.notna(worst) else 0.0)
    return ref


def eligible(df: pd.DataFrame, cols: SearchColumns) -> pd.Series:
    """Completed, feasible search trials (not baselines) with a latency and an accuracy: the front's pool."""
    ok = ((df["state"] == COMPLETE) & df["feasible"] & ~df["is_baseline"] & df[cols.latency].notna()
          & df[cols.accuracy].notna())
    for o in cols.extra:
        ok &= df[o.attr].notna()
    return ok


def hypervolume_history(df: pd.DataFrame, cols: SearchColumns, ref_latency: float) -> pd.DataFrame:
    """Hypervolume of the feasible front after each trial (by trial number): ``trial``, ``hypervolume``,
    over every objective (:func:`reference_point`)."""
    d = df.sort_values("trial")
    ok = eligible(d, cols).to_numpy()
    values = d[cols.front_columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    ref = reference_point(df, cols, ref_latency)
    rows = []
    for i, t in enumerate(d["trial"]):
        m = ok[: i + 1]
        hv = pareto.hypervolume(values[: i + 1][m], ref, cols.directions) if m.any() else 0.0
        rows.append({"trial": int(t), "hypervolume": hv})
    return pd.DataFrame(rows)


def _read_yaml(run: Run, value: Any) -> str:
    if not isinstance(value, str) or not value:
        return ""
    for cand in (run.path / value, Path(value), run.path / "yamls" / Path(value).name):
        if cand.suffix in YAML_SUFFIXES and cand.is_file():
            try:
                return cand.read_text()
            except OSError:
                return ""
    return ""


def _arch_lines(arch: Any) -> str:
    """Block choices per stage, one per hover line (``arch`` parts split on ``/``, ``|``, ``;`` or spaces)."""
    if not isinstance(arch, str) or not arch:
        return ""
    for sep in ("/", "|", ";", " "):
        if sep in arch:
            return "<br>".join(p.strip() for p in arch.split(sep) if p.strip())
    return arch


def _hover(df: pd.DataFrame, cols: SearchColumns, run: Run) -> tuple[list[str], list[list[str]]]:
    texts, custom = [], []
    for r in df.to_dict(orient="records"):
        lat = r[cols.latency]
        ci = ""
        if cols.ci_low and cols.ci_high and pd.notna(r.get(cols.ci_low)):
            ci = f" [{r[cols.ci_low]:.3f}, {r[cols.ci_high]:.3f}]"
        acc = r[cols.accuracy]
        parts = [f"<b>trial {r['trial']}</b>" + (f" · {r['baseline']}" if r.get("baseline") else ""),
                 f"state {r['state']}{'' if r['feasible'] else ' · over budget'}",
                 f"latency {lat:.3f} ms{ci}" if pd.notna(lat) else "latency n/a",
                 f"{cols.accuracy} {acc:.4f}" if pd.notna(acc) else f"{cols.accuracy} not measured"]
        for c, unit in (("params", ""), ("madds", " multiply-adds"), ("mac_bytes", " bytes memory access")):
            if c in r and pd.notna(r[c]):
                parts.append(f"{c} {float(r[c]):,.0f}{unit if c != 'params' else ''}")
        arch = _arch_lines(r.get("arch"))
        if arch:
            parts.append("blocks:<br>" + arch)
        texts.append("<br>".join(parts))
        custom.append([_read_yaml(run, r.get("yaml_path")), f"trial {r['trial']}"
                       + (f" ({r['baseline']})" if r.get("baseline") else "")])
    return texts, custom


def _scatter(df: pd.DataFrame, cols: SearchColumns, run: Run, *, name: str, y: pd.Series | None = None,
             **marker: Any) -> go.Scatter:
    texts, custom = _hover(df, cols, run)
    err = None
    if cols.ci_low and cols.ci_high:
        lat = df[cols.latency].astype(float)
        err = {"type": "data", "symmetric": False, "thickness": 1, "width": 0,
               "array": (df[cols.ci_high].astype(float) - lat).clip(lower=0).fillna(0).tolist(),
               "arrayminus": (lat - df[cols.ci_low].astype(float)).clip(lower=0).fillna(0).tolist()}
    return go.Scatter(x=df[cols.latency], y=df[cols.accuracy] if y is None else y, mode="markers", name=name,
                      hovertext=texts, hoverinfo="text", customdata=custom, error_x=err, marker=marker)


def pareto_trials(df: pd.DataFrame, cols: SearchColumns) -> pd.DataFrame:
    """The Pareto-optimal search trials over every objective, sorted by latency: the export's ``pareto``
    column when the accuracy is ``map`` (what it was computed on), else computed here."""
    ok = eligible(df, cols)
    if cols.accuracy == "map" and "pareto" in df.columns:
        return df[_bool(df["pareto"]) & ok].sort_values(cols.latency)
    cand = df[ok]
    values = cand[cols.front_columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    return cand[pareto.pareto_mask(values, cols.directions, ties="first")].sort_values(cols.latency)


def trials_figure(run: Run, df: pd.DataFrame, cols: SearchColumns, budget: float | None) -> go.Figure:
    """Latency vs accuracy of every trial: front as a step line, greyed infeasible/pruned, budget, baselines."""
    fig = go.Figure()
    lat_ok = df[cols.latency].notna()
    done = df["state"] == COMPLETE
    base = df["is_baseline"]
    feasible = df[done & df["feasible"] & ~base & lat_ok & df[cols.accuracy].notna()]
    infeasible = df[done & ~df["feasible"] & ~base & lat_ok]  # over budget: usually never trained
    pruned = df[(df["state"] == PRUNED) & ~base & lat_ok]
    front = pareto_trials(df, cols)
    if len(front) and not cols.extra:
        fig.add_trace(go.Scatter(x=front[cols.latency], y=front[cols.accuracy], mode="lines", line_shape="hv",
                                 name="Pareto front", line={"color": COLOURS[1], "width": 2},
                                 hoverinfo="skip"))
    elif len(front):  # a front over more objectives is no staircase in this plane: ring its points
        fig.add_trace(go.Scatter(x=front[cols.latency], y=front[cols.accuracy], mode="markers",
                                 name=f"Pareto front ({len(cols.front_columns)} objectives)", hoverinfo="skip",
                                 marker={"size": 16, "color": "rgba(0,0,0,0)",
                                         "line": {"color": COLOURS[1], "width": 2}}))
    fig.add_trace(_scatter(feasible, cols, run, name="feasible trials", color=COLOURS[0], size=9,
                           opacity=0.85))
    if len(infeasible):
        untrained = infeasible[cols.accuracy].isna().any()
        fig.add_trace(_scatter(infeasible, cols, run, y=infeasible[cols.accuracy].fillna(0.0), color=GREY, size=8,
                               name="infeasible (over budget" + (", not trained → drawn at 0)" if untrained else ")"),
                               symbol="circle-open"))
    if len(pruned):
        y = pruned[cols.accuracy].fillna(0.0)
        fig.add_trace(_scatter(pruned, cols, run, name="pruned (no accuracy → drawn at 0)", y=y, color=GREY,
                               size=8, symbol="x-thin-open", line={"width": 1.5, "color": GREY}))
    bl = df[base & lat_ok]
    if len(bl):
        trace = _scatter(bl, cols, run, name="seed baselines", y=bl[cols.accuracy].fillna(0.0),
                         color="#000", size=14, symbol="star")
        trace.mode = "markers+text"
        trace.text = bl["baseline"].tolist()
        trace.textposition = "top center"
        fig.add_trace(trace)
    if budget is not None:
        fig.add_vline(x=budget, line_dash="dash", line_color=COLOURS[3],
                      annotation_text=f"latency budget {budget:g} ms", annotation_position="top right")
    fig.update_layout(height=FIG_HEIGHT + 120, xaxis_title=f"latency ({cols.latency}, ms)",
                      yaxis_title=cols.accuracy, legend={"orientation": "h", "y": -0.18}, margin={"t": 30},
                      hoverlabel={"align": "left"})
    return fig


def objective_figure(run: Run, df: pd.DataFrame, cols: SearchColumns, obj: Objective) -> go.Figure:
    """A further objective against accuracy: completed feasible search trials, the front ringed."""
    done = df[eligible(df, cols)]
    front = pareto_trials(df, cols)
    texts, _ = _hover(done, cols, run)
    fig = go.Figure(go.Scatter(x=done[obj.attr], y=done[cols.accuracy], mode="markers", name="feasible trials",
                               hovertext=texts, hoverinfo="text", marker={"color": COLOURS[0], "size": 9}))
    if len(front):
        fig.add_trace(go.Scatter(x=front[obj.attr], y=front[cols.accuracy], mode="markers", name="Pareto front",
                                 hoverinfo="skip", marker={"size": 16, "color": "rgba(0,0,0,0)",
                                                           "line": {"color": COLOURS[1], "width": 2}}))
    fig.update_layout(height=FIG_HEIGHT, xaxis_title=f"{obj.axis_title} ({obj.direction})",
                      yaxis_title=cols.accuracy, legend={"orientation": "h", "y": -0.18}, margin={"t": 30})
    return fig


def hypervolume_figure(hist: pd.DataFrame, ref_latency: float, accuracy: str) -> go.Figure:
    fig = go.Figure(go.Scatter(x=hist["trial"], y=hist["hypervolume"], mode="lines+markers", line_shape="hv",
                               name="hypervolume", marker={"size": 5, "color": COLOURS[2]},
                               hovertemplate="after trial %{x}: %{y:.4g}<extra></extra>"))
    fig.update_layout(height=360, xaxis_title="trial", margin={"t": 30},
                      yaxis_title=f"hypervolume (ms × {accuracy}; ref {ref_latency:.3g} ms, 0)")
    return fig


JOURNAL_SUFFIXES = (".log", ".jsonl", ".journal")
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def _storage_candidates(run: Run) -> list[Path]:
    """Storage files: ``meta["storage"]`` as a path, then journal/SQLite files in the run folder and in
    its parent (the study folder ``results/search/<study>/``)."""
    out: list[Path] = []
    given = run.meta.get("storage")
    if isinstance(given, str) and given and "://" not in given:
        for cand in (Path(given), run.path / given, run.path.parent / Path(given).name):
            if cand.is_file():
                out.append(cand)
                break
    for folder in (run.path, run.path.parent):
        out += [p for p in sorted(folder.iterdir()) if p.is_file() and p.suffix in JOURNAL_SUFFIXES + SQLITE_SUFFIXES]
    return out


@contextlib.contextmanager
def _storage(run: Run) -> Iterator[Any]:
    """An Optuna storage for the run's study; files are opened through a private copy (never written)."""
    url = run.meta.get("storage")
    if isinstance(url, str) and url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        paths = [p for p in (path, run.path / path.name, run.path.parent / path.name) if p.is_file()]
    elif isinstance(url, str) and "://" in url:
        yield url  # a database server (PostgreSQL ...): read as it is
        return
    else:
        paths = _storage_candidates(run)
    if not paths:
        yield None
        return
    src = paths[0]
    with tempfile.TemporaryDirectory() as tmp:
        dst = Path(tmp) / src.name
        shutil.copyfile(src, dst)
        if src.suffix in SQLITE_SUFFIXES:
            yield optuna.storages.RDBStorage(f"sqlite:///{dst}")
        else:
            yield JournalStorage(JournalFileBackend(str(dst)))


def _objective_names(study: Any) -> list[str]:
    if study.metric_names:
        return list(study.metric_names)
    dirs = study.directions
    named = study.user_attrs.get(OBJECTIVES_ATTR)
    if named and len(named) == len(dirs):
        return [o.label for o in resolve(named)]
    if dirs == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]:
        return ["latency", "mAP"]
    if dirs == [optuna.study.StudyDirection.MAXIMIZE]:
        return ["mAP"]
    return [f"objective {i}" for i in range(len(dirs))]


def _evaluator() -> tuple[str, Any]:
    """fANOVA when scikit-learn is installed (Optuna's default), else PED-ANOVA (no extra dependency).

    Targets are passed as minimisation (maximised objectives negated): PED-ANOVA ranks by low values."""
    try:
        import sklearn  # noqa: F401  # optional, not a latlab dependency: enables fANOVA

        return "fANOVA", lambda: optuna.importance.FanovaImportanceEvaluator(seed=0)
    except ImportError:
        return "PED-ANOVA", optuna.importance.PedAnovaImportanceEvaluator


def importances(run: Run) -> tuple[pd.DataFrame | None, str]:
    """Optuna parameter importances per objective, or None and why not."""
    try:
        with _storage(run) as storage:
            if storage is None:
                return None, ("no Optuna storage found (expected meta['storage'], or a journal *.log or "
                              "SQLite *.db in the run folder or the study folder above it)")
            names = [s.study_name for s in optuna.get_all_study_summaries(storage)]
            name = run.meta.get("study") or run.meta.get("study_name")
            if name not in names:
                if len(names) != 1:
                    return None, f"storage holds studies {names}; meta['study'] must name one"
                name = names[0]
            study = optuna.load_study(study_name=name, storage=storage)
            done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE and t.params]
            if len(done) < MIN_IMPORTANCE_TRIALS:
                return None, (f"parameter importances need at least {MIN_IMPORTANCE_TRIALS} completed trials "
                              f"with parameters; the study has {len(done)}")
            targets = _objective_names(study)
            method, make = _evaluator()
            rows = []
            for i, tname in enumerate(targets):
                sign = -1.0 if study.directions[i] == optuna.study.StudyDirection.MAXIMIZE else 1.0
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    imp = optuna.importance.get_param_importances(
                        study, evaluator=make(), target=lambda t, i=i, sign=sign: sign * t.values[i])
                rows += [{"objective": tname, "param": p, "importance": v} for p, v in imp.items()]
            return pd.DataFrame(rows), f"study {name!r}: {len(done)} completed trials, {method} importances"
    except Exception as exc:
        return None, f"parameter importances unavailable: {type(exc).__name__}: {exc}"


def importance_figure(imp: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    params = list(imp.groupby("param")["importance"].max().sort_values().index)
    for i, (obj, part) in enumerate(imp.groupby("objective", sort=False)):
        s = part.set_index("param")["importance"].reindex(params).fillna(0.0)
        fig.add_trace(go.Bar(x=s.values, y=params, orientation="h", name=str(obj), marker_color=COLOURS[i],
                             hovertemplate="%{y}: %{x:.3f}<extra>" + str(obj) + "</extra>"))
    fig.update_layout(barmode="group", height=max(300, 28 * len(params) * max(1, imp["objective"].nunique())),
                      xaxis_title="importance (normalised)", margin={"t": 30, "l": 200})
    return fig


def build(page: Page, runs: list[Run]) -> None:
    """Add one section per search run to ``page``."""
    for run in runs:
        found = run.first_with(TRIAL_COLUMNS, prefer=("trials",))
        key = str(run.meta.get("study") or run.path.name)
        page.heading(f"Search study {key} · {run.path.name}")
        budget = budget_of(run.meta)
        add_run_header(page, run, extras={"latency budget": budget_text(run.meta, budget)} if budget else None)
        if found is None:
            page.note(f"{run.path} has no trials table (a CSV with columns trial, state, ...).", warn=True)
            continue
        try:
            cols = columns_of(found[1], run.meta)
        except KeyError as exc:
            page.note(f"{found[0]}.csv: {exc.args[0]}", warn=True)
            continue
        df = prepare(found[1], cols, budget)
        n_state = df["state"].value_counts().to_dict()
        page.paragraph(f"{len(df)} trials (" + ", ".join(f"{v} {k.lower()}" for k, v in n_state.items())
                       + f"); {int(df['feasible'].sum())} feasible; accuracy = {cols.accuracy}, latency = "
                       f"{cols.latency}.")
        add_trust_block(page, run.meta, df)
        page.figure(trials_figure(run, df, cols, budget), name=f"{key}-trials", click_panel=True,
                    caption="Every trial: hover for its block choices and counts, click for its model YAML. "
                    "Grey: infeasible (over the latency budget) or pruned. Step line: Pareto front of the "
                    "completed feasible trials (lower latency, higher accuracy). Whiskers: latency CI.")
        for obj in cols.extra:
            page.figure(objective_figure(run, df, cols, obj), name=f"{key}-{obj.name}",
                        caption=f"{obj.label} ({obj.direction}) against {cols.accuracy}: completed feasible "
                        "search trials; ringed: the Pareto front over all objectives.")
        front = pareto_trials(df, cols)
        if len(front):
            extra = [o.attr for o in cols.extra]
            show = [c for c in dict.fromkeys(("trial", "baseline", "arch", cols.latency, cols.ci_low, cols.ci_high,
                                              cols.accuracy, *extra, "params", "madds", "mac_bytes"))
                    if c and c in front.columns]
            n_obj = len(cols.front_columns)
            page.table(front[show], caption="Pareto-optimal trials." if not cols.extra else
                       f"Pareto-optimal trials over {n_obj} objectives: {', '.join(cols.front_columns)}.")
        lat_all = df.loc[df[cols.latency].notna(), cols.latency]
        ref = budget if budget is not None else (float(lat_all.max()) * 1.1 if len(lat_all) else float("nan"))
        if math.isfinite(ref) and len(df):
            hist = hypervolume_history(df, cols, ref)
            page.figure(hypervolume_figure(hist, ref, cols.accuracy), name=f"{key}-hv",
                        caption="Hypervolume of the feasible front after each trial: the area it dominates "
                        f"up to latency {ref:.3g} ms ({'the budget' if budget else '1.1 × the slowest trial'}) "
                        f"and down to {cols.accuracy} = 0. Flat stretches are trials that did not improve it.")
        imp, why = importances(run)
        page.heading("Parameter importances", level=3)
        if imp is None or not len(imp):
            page.note(why, warn=True)
        else:
            page.figure(importance_figure(imp), name=f"{key}-importance", caption=why)
