"""Two search studies side by side: their fronts, and where their best models differ in block choices.

The question it answers: a search scored on one runtime's latency (INT8 ONNX Runtime, say) and the same
search on another (eager torch FP32): do they pick different blocks? Each study is read from its Optuna
storage (``load_search_study``) into the export's trials table (``trials_frame``). Its *members* are its
Pareto front (the export's ``pareto`` column), or with ``top_k`` its ``top_k`` most accurate finished,
feasible search trials. Per search-space dimension (the keys of a trial's decoded ``point``) the page shows
the share of each value among each study's members and the total variation distance between the two
distributions (½ Σ |share_a − share_b|: 0 = same mix, 1 = no value in common); a dimension *differs* when
that distance is at least ``DIFF_THRESHOLD``. Latency is each study's own backend's (recorded per trial as
``latency_backend``), so the two fronts share the accuracy axis, not the latency scale.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from latlab.errors import SearchError
from latlab.profiling.backends import backend_names, get_backend
from latlab.report.figures import COLOURS, FIG_HEIGHT, GREY
from latlab.report.html import Page
from latlab.runs import RESULTS_ROOT
from latlab.search.export import accuracy_column, front_candidates, trials_frame
from latlab.search.storage import load_search_study

DIFF_THRESHOLD = 0.5


@dataclass
class StudySide:
    """One study as the comparison sees it: its trials table, latency backend and precision, accuracy column,
    and the rows of its members (front or top-k)."""

    name: str
    location: str
    trials: pd.DataFrame
    backend: str
    precision: str
    accuracy: str
    members: pd.DataFrame

    @property
    def label(self) -> str:
        return f"{self.name} ({self.backend}, {self.precision})"


@dataclass
class DimensionDiff:
    """The value shares of one space dimension among each study's members, and their distance."""

    dimension: str
    share_a: dict[str, float]
    share_b: dict[str, float]
    distance: float

    @property
    def differs(self) -> bool:
        return self.distance >= DIFF_THRESHOLD


@dataclass
class StudyComparison:
    """Both sides, the per-dimension differences (most different first) and the page written."""

    a: StudySide
    b: StudySide
    dimensions: list[DimensionDiff]
    members: str
    page: Path | None = None
    notes: list[str] = field(default_factory=list)

    def table(self) -> pd.DataFrame:
        """One row per dimension: ``dimension``, ``<a> shares``, ``<b> shares``, ``distance``, ``differs``."""
        def shares(d: dict[str, float]) -> str:
            return ", ".join(f"{v} {s:.0%}" for v, s in sorted(d.items(), key=lambda kv: -kv[1])) or "-"

        return pd.DataFrame([{"dimension": d.dimension, f"{self.a.name} ({self.members})": shares(d.share_a),
                              f"{self.b.name} ({self.members})": shares(d.share_b),
                              "distance": round(d.distance, 3), "differs": "DIFFERS" if d.differs else ""}
                             for d in self.dimensions])


def _backend_of(study: optuna.Study) -> str:
    """The latency backend the study's trials recorded (the most common ``latency_backend``), else its
    latency source (``lut:<file>``), else eager ``torch`` (studies made before backends were recorded)."""
    found = Counter(t.user_attrs.get("latency_backend") for t in study.get_trials(deepcopy=False)
                    if t.user_attrs.get("latency_backend"))
    if found:
        return str(found.most_common(1)[0][0])
    return str(study.user_attrs.get("latlab.latency_source") or "torch")


def _members(trials: pd.DataFrame, top_k: int | None) -> pd.DataFrame:
    if top_k is None:
        return trials[trials["pareto"].fillna(False).astype(bool)]
    return front_candidates(trials).sort_values(accuracy_column(trials), ascending=False).head(top_k)


def load_side(study: str, storage: str | None = None, root: Path | str = RESULTS_ROOT,
              top_k: int | None = None) -> StudySide:
    """Open ``study`` (in ``storage``, default its journal under ``root``) and pick its members."""
    st, info = load_search_study(study, storage, root)
    trials = trials_frame(st)
    backend = _backend_of(st)
    precision = get_backend(backend).precision if backend in backend_names() else "?"
    return StudySide(study, info.location, trials, backend, precision, accuracy_column(trials),
                     _members(trials, top_k))


def value_shares(points: list[dict[str, Any]], dimension: str) -> dict[str, float]:
    """The share of each value of ``dimension`` among ``points`` (values as text; points lacking it skipped)."""
    values = Counter(str(p[dimension]) for p in points if dimension in p)
    total = sum(values.values())
    return {v: n / total for v, n in values.items()} if total else {}


def total_variation(a: dict[str, float], b: dict[str, float]) -> float:
    """½ Σ |a(v) − b(v)| over the union of values (1.0 when one side is empty and the other is not)."""
    if not a or not b:
        return 0.0 if a == b else 1.0
    return 0.5 * sum(abs(a.get(v, 0.0) - b.get(v, 0.0)) for v in set(a) | set(b))


def _points(members: pd.DataFrame) -> list[dict[str, Any]]:
    return [json.loads(p) for p in members["point"] if isinstance(p, str) and p]


def compare_choices(points_a: list[dict[str, Any]], points_b: list[dict[str, Any]]) -> list[DimensionDiff]:
    """Per dimension (every key of any point), the value shares on each side and their distance, the most
    different first (ties: dimension name)."""
    dims = sorted({k for p in [*points_a, *points_b] for k in p})
    diffs = []
    for dim in dims:
        sa, sb = value_shares(points_a, dim), value_shares(points_b, dim)
        diffs.append(DimensionDiff(dim, sa, sb, total_variation(sa, sb)))
    return sorted(diffs, key=lambda d: (-d.distance, d.dimension))


def fronts_figure(a: StudySide, b: StudySide) -> go.Figure:
    """Two panels (each study's own latency scale), accuracy on the shared y axis: every finished trial in
    grey, the members in colour."""
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, subplot_titles=(a.label, b.label))
    for col, (side, colour) in enumerate(((a, COLOURS[0]), (b, COLOURS[1])), start=1):
        done = side.trials[(side.trials["state"] == "COMPLETE") & side.trials["latency_ms"].notna()]
        front = side.members.sort_values("latency_ms")
        fig.add_trace(go.Scatter(x=done["latency_ms"], y=done[side.accuracy], mode="markers", name=f"{side.name} trials",
                                 marker={"color": GREY, "size": 7}, text=done["arch"],
                                 hovertemplate="trial %{customdata}<br>%{text}<extra></extra>",
                                 customdata=done["trial"]), row=1, col=col)
        fig.add_trace(go.Scatter(x=front["latency_ms"], y=front[side.accuracy], mode="lines+markers",
                                 name=f"{side.name} members", marker={"color": colour, "size": 10},
                                 line={"color": colour, "shape": "hv"}, text=front["arch"],
                                 hovertemplate="trial %{customdata}<br>%{text}<extra></extra>",
                                 customdata=front["trial"]), row=1, col=col)
        fig.update_xaxes(title_text=f"latency ms ({side.backend}, {side.precision})", row=1, col=col)
    fig.update_yaxes(title_text=a.accuracy if a.accuracy == b.accuracy else f"{a.accuracy} / {b.accuracy}",
                     row=1, col=1)
    fig.update_layout(height=FIG_HEIGHT, margin={"t": 50})
    return fig


def compare_studies(study_a: str, study_b: str, *, storage_a: str | None = None, storage_b: str | None = None,
                    root: Path | str = RESULTS_ROOT, top_k: int | None = None,
                    out: Path | str | None = None) -> StudyComparison:
    """Load both studies, compare their members' block choices and write the page to ``out`` (default
    ``<root>/search/compare-<a>-vs-<b>.html``)."""
    if top_k is not None and top_k < 1:
        raise SearchError(f"--top-k {top_k}: expected a positive number of trials per study")
    a = load_side(study_a, storage_a, root, top_k)
    b = load_side(study_b, storage_b, root, top_k)
    members = "front" if top_k is None else f"top {top_k}"
    comp = StudyComparison(a, b, compare_choices(_points(a.members), _points(b.members)), members)
    for side in (a, b):
        if side.members.empty:
            comp.notes.append(f"study {side.name} has no {members} members (no finished, scored, feasible "
                              "search trial): its choice shares are empty")
    if a.accuracy != b.accuracy:
        comp.notes.append(f"the studies score accuracy differently ({a.name}: {a.accuracy}, {b.name}: "
                          f"{b.accuracy}); the y values are not comparable")
    path = Path(out) if out is not None else Path(root) / "search" / f"compare-{study_a}-vs-{study_b}.html"
    comp.page = study_page(comp).write(path)
    return comp


def study_page(comp: StudyComparison) -> Page:
    """The HTML page: both studies' sources, both fronts, the block-choice table."""
    a, b = comp.a, comp.b
    page = Page(f"Search studies compared: {a.name} vs {b.name}")
    for side in (a, b):
        done = int((side.trials["state"] == "COMPLETE").sum())
        page.paragraph(f"{side.name}: {len(side.trials)} trials ({done} complete) in {side.location}; latency "
                       f"on {side.backend} ({side.precision}); accuracy {side.accuracy}; {len(side.members)} "
                       f"{comp.members} members.")
    for note in comp.notes:
        page.note(note, warn=True)
    page.heading("Fronts")
    page.figure(fronts_figure(a, b), name="fronts",
                caption="Grey: every finished trial; colour: the members compared below. Each panel's latency "
                        "is its own study's backend, so compare shapes and block choices, not the x values.")
    page.heading("Block choices")
    differing = [d.dimension for d in comp.dimensions if d.differs]
    page.note(f"Dimensions where the {comp.members} members differ (total variation distance ≥ "
              f"{DIFF_THRESHOLD}): {', '.join(differing) if differing else 'none'}.")
    page.table(comp.table(), caption="Share of each value among each study's members; distance = ½ Σ |share "
                                     "difference| (0: same mix, 1: no value in common).")
    return page
