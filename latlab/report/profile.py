"""Profile page: where the work and the time of a model go, and how little FLOPs say about speed.

Reads ``profile`` runs (``latlab profile``: ``latency.csv``, per-layer ``layers.csv``, profiler
``ops_by_category.csv``) and ``count`` runs (``latlab count --save``: the count table ``ops.csv``,
``crosscheck.csv``, ``meta["totals"]``). Runs of the same model and input size (``meta["model"]``,
``meta["imgsz"]``) are shown together, so the per-layer latency of a profile run sits beside the per-layer
counts of a count run; a profile run that also holds a count table needs no partner.

Per model: per-layer stacked bars by op category (FLOPs, memory access bytes, and latency when a
per-layer-per-category time table ``layer, category, time_ms`` exists, otherwise per-layer latency bars
with CI whiskers); latency vs madds and latency vs mac_bytes over layers with Spearman ρ; the profiler's
time share per op category beside the FLOPs and memory-access shares; the counter cross-check table.
Across models: end-to-end latency vs total madds and vs total mac_bytes with Spearman ρ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from latlab.report.figures import (
    COLOURS,
    FIG_HEIGHT,
    add_run_header,
    ci_arrays,
    estimator_of,
    latency_column,
    rho_text,
    si,
    spearman,
)
from latlab.report.html import Page
from latlab.report.loaders import COUNT_COLUMNS, CROSSCHECK_COLUMNS, Run

# The five groups of the page (ShuffleNetV2 Fig. 2 style, depthwise kept apart from dense convolution).
GROUPS: tuple[str, ...] = ("conv", "depthwise", "element-wise", "data movement", "other")
GROUP_OF: dict[str, str] = {
    "conv": "conv", "pointwise": "conv", "group_conv": "conv", "linear": "conv",
    "depthwise": "depthwise",
    "elementwise": "element-wise", "norm": "element-wise",
    "data_movement": "data movement",
    "pooling": "other", "other": "other",
}
GROUP_COLOURS = dict(zip(GROUPS, ("#1f77b4", "#17becf", "#ff7f0e", "#2ca02c", "#9e9e9e"), strict=True))
LAYER_TIME_COLUMNS = frozenset({"layer", "category", "time_ms"})
OP_TIME_COLUMNS = frozenset({"category", "time_ms"})


def group_of(category: str) -> str:
    return GROUP_OF.get(str(category), "other")


@dataclass
class ModelProfile:
    """Everything the runs say about one model at one input size."""

    model: str
    imgsz: Any
    runs: list[Run] = field(default_factory=list)
    counts: pd.DataFrame | None = None
    totals: dict[str, float] | None = None
    layers: pd.DataFrame | None = None
    layer_times: pd.DataFrame | None = None
    op_times: pd.DataFrame | None = None
    latency: pd.DataFrame | None = None
    crosscheck: pd.DataFrame | None = None
    estimator: str = "estimate"

    @property
    def title(self) -> str:
        return f"{self.model} @ {self.imgsz}" if self.imgsz not in (None, "") else str(self.model)


def _key(run: Run) -> tuple[str, str]:
    model = run.meta.get("model") or run.meta.get("layers_model")
    if model is None:
        lat = run.first_with({"model"}, prefer=("latency",))
        model = str(lat[1]["model"].iloc[0]) if lat is not None and len(lat[1]) else run.path.name
    return str(model), str(run.meta.get("imgsz", ""))


def collect(runs: list[Run]) -> list[ModelProfile]:
    """Merge the profile and count runs per (model, imgsz)."""
    out: dict[tuple[str, str], ModelProfile] = {}
    for run in runs:
        key = _key(run)
        mp = out.setdefault(key, ModelProfile(key[0], run.meta.get("imgsz")))
        mp.runs.append(run)
        found = run.first_with(COUNT_COLUMNS, prefer=("counts", "count", "ops"))
        if found is not None and mp.counts is None:
            mp.counts = found[1]
        if mp.totals is None and isinstance(run.meta.get("totals"), dict):
            mp.totals = {k: float(v) for k, v in run.meta["totals"].items()}
        found = run.first_with({"layer", "estimate_ms"}, prefer=("layers",))
        if found is not None and "op" not in found[1].columns and mp.layers is None:
            mp.layers = found[1]
            mp.estimator = estimator_of(found[1], run.meta)
        found = run.first_with(LAYER_TIME_COLUMNS, prefer=("layer_ops", "layer_categories"))
        if found is not None and mp.layer_times is None:
            mp.layer_times = found[1]
        found = run.first_with(OP_TIME_COLUMNS, prefer=("ops_by_category",))
        if found is not None and "layer" not in found[1].columns and mp.op_times is None:
            mp.op_times = found[1]
        found = run.first_with({"model", "estimate_ms"}, prefer=("latency", "models"))
        if found is not None and mp.latency is None:
            rows = found[1][found[1]["model"].astype(str) == mp.model]
            if len(rows):
                mp.latency = rows.reset_index(drop=True)
                if mp.layers is None:
                    mp.estimator = estimator_of(rows, run.meta)
        found = run.first_with(CROSSCHECK_COLUMNS, prefer=("crosscheck",))
        if found is not None and mp.crosscheck is None:
            mp.crosscheck = found[1]
    for mp in out.values():
        if mp.totals is None and mp.counts is not None:
            mp.totals = {c: float(mp.counts[c].sum()) for c in ("params", "madds", "flops", "mac_bytes")
                         if c in mp.counts.columns}
    return list(out.values())


def counts_by_layer_group(counts: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, group) sums of ``madds``, ``flops`` and ``mac_bytes`` (layers with index >= 0)."""
    df = counts[counts["layer"] >= 0].copy()
    df["group"] = [group_of(c) for c in df["category"]]
    cols = [c for c in ("madds", "flops", "mac_bytes") if c in df.columns]
    return df.groupby(["layer", "group"], as_index=False)[cols].sum()


def _layer_labels(mp: ModelProfile, layers: list[int]) -> dict[int, str]:
    types: dict[int, str] = {}
    if mp.layers is not None and "type" in mp.layers.columns:
        types = dict(zip(mp.layers["layer"].astype(int), mp.layers["type"].astype(str), strict=False))
    return {i: f"{i} {types[i]}" if i in types else str(i) for i in layers}


def layer_stack_figure(mp: ModelProfile) -> go.Figure | None:
    """Per-layer bars stacked by op group: FLOPs, MAC bytes, and latency (stacked by group when a
    per-layer-per-category time table exists, else one bar per layer with CI whiskers)."""
    rows: list[str] = []
    grouped = counts_by_layer_group(mp.counts) if mp.counts is not None else None
    if grouped is not None and len(grouped):
        if "flops" in grouped.columns:
            rows.append("flops")
        rows.append("mac_bytes")
    if mp.layer_times is not None or mp.layers is not None:
        rows.append("latency")
    if not rows:
        return None
    layer_ids: set[int] = set()
    if grouped is not None:
        layer_ids |= set(grouped["layer"].astype(int))
    if mp.layers is not None:
        layer_ids |= set(mp.layers["layer"].astype(int))
    order = sorted(layer_ids)
    labels = _layer_labels(mp, order)
    titles = {"flops": "FLOPs by op category", "mac_bytes": "memory access (bytes) by op category",
              "latency": f"latency per layer ({mp.estimator}, ms)"}
    fig = make_subplots(rows=len(rows), cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=[titles[r] for r in rows])
    shown: set[str] = set()
    for r, what in enumerate(rows, start=1):
        if what in ("flops", "mac_bytes") and grouped is not None:
            for g in GROUPS:
                part = grouped[grouped["group"] == g]
                if not len(part) or not part[what].any():
                    continue
                fig.add_trace(go.Bar(x=[labels[int(i)] for i in part["layer"]], y=part[what], name=g,
                                     legendgroup=g, showlegend=g not in shown,
                                     marker_color=GROUP_COLOURS[g],
                                     hovertemplate=f"layer %{{x}}<br>{g}: %{{y:.4s}} {what}<extra></extra>"),
                              row=r, col=1)
                shown.add(g)
        elif what == "latency" and mp.layer_times is not None:
            lt = mp.layer_times.assign(group=[group_of(c) for c in mp.layer_times["category"]])
            lt = lt.groupby(["layer", "group"], as_index=False)["time_ms"].sum()
            for g in GROUPS:
                part = lt[lt["group"] == g]
                if not len(part):
                    continue
                fig.add_trace(go.Bar(x=[labels.get(int(i), str(i)) for i in part["layer"]], y=part["time_ms"],
                                     name=g, legendgroup=g, showlegend=g not in shown,
                                     marker_color=GROUP_COLOURS[g],
                                     hovertemplate=f"layer %{{x}}<br>{g}: %{{y:.3f}} ms<extra></extra>"),
                              row=r, col=1)
                shown.add(g)
        elif what == "latency" and mp.layers is not None:
            lay = mp.layers.sort_values("layer")
            fig.add_trace(go.Bar(x=[labels[int(i)] for i in lay["layer"]], y=lay["estimate_ms"],
                                 name=f"latency ({mp.estimator})", marker_color="#444",
                                 error_y=ci_arrays(lay, "estimate_ms"),
                                 hovertemplate="layer %{x}<br>%{y:.3f} ms<extra></extra>"), row=r, col=1)
    fig.update_layout(barmode="stack", height=260 * len(rows) + 80, margin={"t": 60, "b": 60},
                      legend={"orientation": "h", "y": 1.06, "x": 0})
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=[labels[i] for i in order])
    fig.update_xaxes(title_text="YAML layer", row=len(rows), col=1)
    return fig


def layer_points(mp: ModelProfile) -> pd.DataFrame | None:
    """Per-layer latency joined with per-layer madds and mac_bytes (layers present in both)."""
    if mp.layers is None or mp.counts is None:
        return None
    c = mp.counts[mp.counts["layer"] >= 0].groupby("layer", as_index=False)[["madds", "mac_bytes"]].sum()
    cols = [x for x in ("layer", "type", "estimate_ms", "ci_low_ms", "ci_high_ms") if x in mp.layers.columns]
    return mp.layers[cols].merge(c, on="layer", how="inner")


def scatter_figure(df: pd.DataFrame, *, latency: str, label: str, estimator: str, what: str
                   ) -> tuple[go.Figure, dict[str, float]]:
    """Latency vs madds and latency vs mac_bytes side by side, Spearman ρ in the subplot titles.

    ``label`` is the column naming each point (layer or model); returns the figure and the two ρ.
    """
    rhos = {x: spearman(df[x], df[latency]) for x in ("madds", "mac_bytes")}
    n = len(df)
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.09, subplot_titles=[
        f"latency vs multiply-adds: {rho_text(rhos['madds'], n)}",
        f"latency vs memory access bytes: {rho_text(rhos['mac_bytes'], n)}"])
    names = df[label].astype(str)
    err = ci_arrays(df, latency)
    for col, x in enumerate(("madds", "mac_bytes"), start=1):
        fig.add_trace(go.Scatter(
            x=df[x], y=df[latency], mode="markers+text" if n <= 12 else "markers", text=names,
            textposition="top center", name=f"{what}s ({x})", showlegend=False, error_y=err,
            marker={"size": 9, "color": COLOURS[col - 1], "opacity": 0.8},
            hovertemplate=f"{what} %{{text}}<br>{x} %{{x:.4s}}<br>{estimator} %{{y:.3f}} ms<extra></extra>"),
            row=1, col=col)
        fig.update_xaxes(title_text="multiply-adds" if x == "madds" else "memory access (bytes)", row=1, col=col)
    fig.update_yaxes(title_text=f"latency, {estimator} (ms)", row=1, col=1)
    fig.update_layout(height=FIG_HEIGHT, margin={"t": 60})
    return fig, rhos


def share_figure(mp: ModelProfile) -> go.Figure | None:
    """Share of measured time (torch.profiler) per op group beside the share of FLOPs and MAC bytes."""
    if mp.op_times is None:
        return None
    t = mp.op_times.assign(group=[group_of(c) for c in mp.op_times["category"]])
    t = t.groupby("group")["time_ms"].sum()
    series = {"time (torch.profiler)": t / t.sum() if t.sum() else t}
    if mp.counts is not None:
        c = mp.counts.assign(group=[group_of(x) for x in mp.counts["category"]])
        for col, name in (("flops", "FLOPs"), ("mac_bytes", "memory access bytes")):
            if col in c.columns:
                s = c.groupby("group")[col].sum()
                series[name] = s / s.sum() if s.sum() else s
    fig = go.Figure()
    for i, (name, s) in enumerate(series.items()):
        groups = [g for g in GROUPS if g in s.index]
        fig.add_trace(go.Bar(x=groups, y=[100 * float(s[g]) for g in groups], name=name,
                             marker_color=COLOURS[i], hovertemplate="%{x}: %{y:.1f} %<extra>" + name + "</extra>"))
    fig.update_layout(barmode="group", height=FIG_HEIGHT, yaxis_title="share (%)", xaxis_title="op group",
                      margin={"t": 40})
    return fig


MODEL_TABLE_COLUMNS = frozenset({"model", "estimate_ms", "madds", "mac_bytes"})


def model_points(profiles: list[ModelProfile], runs: list[Run] | None = None) -> pd.DataFrame:
    """One row per model with an end-to-end latency and count totals: model, estimate_ms, CI, madds, mac_bytes.

    Rows come from multi-model tables (``model``, ``estimate_ms``, ``madds``, ``mac_bytes``: models measured
    in the same interleaved rounds) and from each profile whose run (or count run) gave totals; a model
    already in a multi-model table is not added twice."""
    rows: list[dict[str, Any]] = []
    for run in runs or []:
        for df in run.tables_with(MODEL_TABLE_COLUMNS).values():
            for r in df.to_dict(orient="records"):
                if any(x["model"] == str(r["model"]) for x in rows):
                    continue
                rows.append({"model": str(r["model"]), "estimate_ms": float(r["estimate_ms"]),
                             "ci_low_ms": float(r.get("ci_low_ms", r["estimate_ms"])),
                             "ci_high_ms": float(r.get("ci_high_ms", r["estimate_ms"])),
                             "madds": float(r["madds"]), "mac_bytes": float(r["mac_bytes"]),
                             "estimator": str(r.get("estimator") or estimator_of(df, run.meta))})
    for mp in profiles:
        if any(x["model"] in (mp.model, mp.title) for x in rows):
            continue
        if mp.latency is None or not mp.totals or "madds" not in mp.totals or "mac_bytes" not in mp.totals:
            continue
        lat = mp.latency.iloc[0]
        col = latency_column(mp.latency)
        if col is None:
            continue
        rows.append({"model": mp.title, "estimate_ms": float(lat[col]),
                     "ci_low_ms": float(lat.get("ci_low_ms", lat[col])),
                     "ci_high_ms": float(lat.get("ci_high_ms", lat[col])),
                     "madds": mp.totals["madds"], "mac_bytes": mp.totals["mac_bytes"],
                     "estimator": mp.estimator})
    return pd.DataFrame(rows)


def build(page: Page, runs: list[Run]) -> None:
    """Add the profile sections for ``runs`` (profile and count runs) to ``page``."""
    profiles = collect(runs)
    models = model_points(profiles, runs)
    if len(models) >= 2:
        page.heading("Across models: FLOPs are not speed")
        est = str(models["estimator"].iloc[0])
        fig, _ = scatter_figure(models, latency="estimate_ms", label="model", estimator=est, what="model")
        page.figure(fig, name="models-scatter", caption="End-to-end latency of each profiled model against its "
                    "total multiply-adds and memory access bytes (from its count run). Whiskers: CI of the "
                    "estimate. Rank correlation, not a fit: it asks whether more work means slower.")
        page.note("Latencies from different runs are comparable only when their fingerprints match; check "
                  "the run headers below.")
    for mp in profiles:
        page.heading(mp.title)
        for run in mp.runs:
            add_run_header(page, run)
        if mp.latency is not None:
            page.table(mp.latency, caption="End-to-end latency (ms).")
        if mp.totals:
            page.paragraph("Totals: " + ", ".join(f"{k} {si(v)}" for k, v in mp.totals.items()))
        shown = False
        fig = layer_stack_figure(mp)
        if fig is not None:
            shown = True
            page.figure(fig, name=f"{mp.title}-layers", caption="Per YAML layer: work by op category "
                        "(conv = dense, pointwise, group conv and linear; element-wise includes BN) and "
                        "measured latency. Bars of different height in the top and bottom rows are the "
                        "point: FLOPs and time do not follow each other.")
        if mp.layers is not None and mp.counts is None:
            page.note("No count table for this model: run `latlab count MODEL --imgsz N --save` to put "
                      "FLOPs and memory access beside the latency.", warn=True)
        pts = layer_points(mp)
        if pts is not None and len(pts):
            fig, _ = scatter_figure(pts, latency="estimate_ms", label="layer", estimator=mp.estimator,
                                    what="layer")
            page.figure(fig, name=f"{mp.title}-layer-scatter", caption="One point per YAML layer (labels are "
                        "layer indices); whiskers are the CI of each layer's estimate.")
        fig = share_figure(mp)
        if fig is not None:
            shown = True
            page.figure(fig, name=f"{mp.title}-shares", caption="Share of measured op time (torch.profiler, "
                        "inclusive per op the model code called) against share of FLOPs and of memory "
                        "access per op group: ShuffleNetV2's Fig. 2 on this machine.")
        if mp.crosscheck is not None:
            page.heading("Counter cross-check", level=3)
            cc = mp.crosscheck.copy()
            if "total" in cc.columns:
                cc.insert(cc.columns.get_loc("total") + 1, "total (SI)", [si(v) for v in cc["total"]])
            page.table(cc, caption="latlab's counts against fvcore, thop and YOLOv5's GFLOPs convention; "
                       "'reason' says what each counter includes.")
        if not shown and mp.latency is None and mp.crosscheck is None:
            for run in mp.runs:
                for name, df in run.all_tables().items():
                    page.table(df, caption=f"{name}.csv")
