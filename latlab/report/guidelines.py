"""Guidelines page: per ShuffleNetV2 guideline, measured vs published relative latency and the verdict.

Reads ``guidelines`` runs (``latlab guidelines``, :mod:`latlab.guidelines.run`): one table per guideline
(``G1.csv`` … with ``guideline``, ``row``, ``is_baseline``, ``width``, ``rel_latency``, ``rel_ci_low``,
``rel_ci_high``, ``paper_rel_latency``, ``madds``, ``flops``, ``mac_bytes``, ``madds_rel``, ``mac_rel``) and
``verdicts.csv`` (:data:`latlab.guidelines.verdict.VERDICT_COLUMNS`). Everything is relative to the
guideline's baseline row at the same width, so a device 10× slower than the paper's still compares.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from latlab.guidelines.paper import TABLES
from latlab.report.figures import COLOURS, FIG_HEIGHT, add_run_header
from latlab.report.html import Page, esc
from latlab.report.loaders import Run

TABLE_COLUMNS = frozenset({"guideline", "row", "width", "rel_latency", "paper_rel_latency"})
VERDICT_TABLE_COLUMNS = frozenset({"guideline", "width", "verdict"})
VERDICT_COLOURS = {"holds": "#1a7f37", "partly": "#9a6700", "does not hold": "#cf222e"}
# (column, legend name, colour, opacity): measured and paper latency solid, the counts lighter beside them.
SERIES = (("rel_latency", "measured latency", COLOURS[0], 1.0),
          ("paper_rel_latency", "paper latency", COLOURS[1], 1.0),
          ("madds_rel", "multiply-adds (paper's FLOPs)", "#7f7f7f", 0.55),
          ("flops_rel", "FLOPs (2×madds + element-wise)", "#bcbd22", 0.55),
          ("mac_rel", "memory access bytes (MAC)", COLOURS[2], 0.55))
SIDE_COLUMNS = ("row", "width", "built", "madds", "flops", "mac_bytes", "madds_rel", "mac_rel", "estimator",
                "estimate_ms", "ci_low_ms", "ci_high_ms", "rel_latency", "rel_ci_low", "rel_ci_high",
                "paper_column", "paper_throughput", "paper_unit", "paper_rel_latency", "note")


def _title(guideline: str) -> str:
    t = TABLES.get(guideline)
    return f"{guideline}: {t.title} (Table {t.table})" if t else guideline


def with_flops_rel(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``flops_rel`` (flops / baseline flops per width) when the table has ``flops`` and a baseline."""
    out = df.copy()
    if "flops" not in out.columns or "is_baseline" not in out.columns or "flops_rel" in out.columns:
        return out
    base = out[out["is_baseline"].astype(str).str.lower().isin(("true", "1"))]
    ref = dict(zip(base["width"], base["flops"], strict=False))
    out["flops_rel"] = [f / ref[w] if ref.get(w) else math.nan for f, w in zip(out["flops"], out["width"],
                                                                                  strict=True)]
    return out


def _verdict_text(row: dict[str, Any]) -> str:
    rho = row.get("trend_rho")
    rho_s = "" if rho is None or (isinstance(rho, float) and math.isnan(rho)) else f", ρ {float(rho):+.2f}"
    return f"{row['verdict']}{rho_s}"


def guideline_figure(df: pd.DataFrame, verdicts: pd.DataFrame | None) -> go.Figure:
    """Grouped bars per row, one subplot per width: measured (with CI) and paper latency relative to the
    baseline row, with multiply-adds, FLOPs and MAC bytes relative to the baseline beside them."""
    df = with_flops_rel(df)
    widths = sorted(df["width"].unique(), key=str)
    titles = []
    for w in widths:
        v = None
        if verdicts is not None:
            match = verdicts[verdicts["width"].astype(str) == str(w)]
            v = match.iloc[0].to_dict() if len(match) else None
        titles.append(f"×{w}: {_verdict_text(v)}" if v else f"×{w}")
    fig = make_subplots(rows=1, cols=len(widths), shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=0.04)
    for c, w in enumerate(widths, start=1):
        part = df[df["width"] == w]
        for col, name, colour, opacity in SERIES:
            if col not in part.columns or part[col].isna().all():
                continue
            err = None
            if col == "rel_latency" and {"rel_ci_low", "rel_ci_high"} <= set(part.columns):
                err = {"type": "data", "symmetric": False, "thickness": 1.5, "width": 4,
                       "array": (part["rel_ci_high"] - part["rel_latency"]).clip(lower=0).fillna(0).tolist(),
                       "arrayminus": (part["rel_latency"] - part["rel_ci_low"]).clip(lower=0).fillna(0).tolist()}
            fig.add_trace(go.Bar(x=part["row"].astype(str), y=part[col], name=name, legendgroup=col,
                                 showlegend=c == 1, marker_color=colour, opacity=opacity, error_y=err,
                                 hovertemplate="%{x}: %{y:.3f}× baseline<extra>" + name + f" ×{w}</extra>"),
                          row=1, col=c)
        fig.add_hline(y=1.0, line_dash="dot", line_color="#555", row=1, col=c)
    fig.update_yaxes(title_text="relative to the baseline row (1 = baseline)", row=1, col=1)
    fig.update_layout(barmode="group", height=FIG_HEIGHT, margin={"t": 60},
                      legend={"orientation": "h", "y": -0.2})
    return fig


def _verdict_html(rows: pd.DataFrame) -> str:
    items = []
    for r in rows.to_dict(orient="records"):
        colour = VERDICT_COLOURS.get(str(r["verdict"]), "#57606a")
        paper = f" · paper: {esc(r['paper_verdict'])}" if isinstance(r.get("paper_verdict"), str) and \
            r.get("paper_verdict") else ""
        items.append(f'<li><b>×{esc(r["width"])}</b>: <b style="color:{colour}">{esc(r["verdict"])}</b>{paper}'
                     f'<br><span class="caption">{esc(r.get("reason", ""))}</span></li>')
    return "<ul>" + "".join(items) + "</ul>"


def build(page: Page, runs: list[Run]) -> None:
    """Add one section per guideline per run to ``page``."""
    for run in runs:
        settings = run.meta.get("settings") if isinstance(run.meta.get("settings"), dict) else {}
        page.heading(f"Guideline run {run.path.name}")
        extras = {k: settings[k] for k in ("imgsz", "batch", "platform", "estimator", "quick") if k in settings}
        add_run_header(page, run, extras=extras)
        verdicts = run.first_with(VERDICT_TABLE_COLUMNS, prefer=("verdicts",))
        vdf = verdicts[1] if verdicts is not None and "row" not in verdicts[1].columns else None
        tables = {n: df for n, df in run.tables_with(TABLE_COLUMNS).items() if len(df)}
        if not tables:
            page.note(f"{run.path} has no guideline table (columns {', '.join(sorted(TABLE_COLUMNS))}).",
                      warn=True)
            continue
        for w in run.meta.get("warnings") or []:
            page.note(str(w), warn=True)
        for _name, df in sorted(tables.items()):
            for g, part in df.groupby("guideline", sort=True):
                page.heading(_title(str(g)), level=3)
                gv = vdf[vdf["guideline"] == g] if vdf is not None else None
                if gv is not None and len(gv):
                    page.raw(_verdict_html(gv))
                page.figure(guideline_figure(part, gv), name=f"{run.path.name}-{g}",
                            caption="Bars are relative to the baseline row at the same width. Whiskers: 95 % "
                            "paired-bootstrap CI of the measured ratio. Grey, olive and green bars: the "
                            "work the configurations do (held about fixed by design) against which the "
                            "latency moves.")
                page.table(part[[c for c in SIDE_COLUMNS if c in part.columns]])
        subs = run.meta.get("substitutions") or []
        if subs:
            page.note("Substitutions: " + "; ".join(map(str, subs)))
        if run.meta.get("citation"):
            page.paragraph(f"Paper numbers: {run.meta['citation']}")
