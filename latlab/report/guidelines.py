"""Guidelines page: per ShuffleNetV2 guideline, measured vs published relative latency and the verdict.

Reads ``guidelines`` runs (``latlab guidelines``, :mod:`latlab.guidelines.run`): one table per guideline
(``G1.csv`` … with ``guideline``, ``row``, ``is_baseline``, ``width``, ``rel_latency``, ``rel_ci_low``,
``rel_ci_high``, ``paper_rel_latency``, ``madds``, ``flops``, ``mac_bytes``, ``madds_rel``, ``mac_rel``) and
``verdicts.csv`` (:data:`latlab.guidelines.verdict.VERDICT_COLUMNS`). Everything is relative to the
guideline's baseline row at the same width, so a device 10× slower than the paper's still compares.

A run of several backends (``latlab guidelines --backend torch,onnxruntime-int8,...``: a ``backend`` column
with more than one name) gets the combined view instead: the verdict matrix (guideline × backend), and per
guideline one figure whose traces are the backends' relative latency beside the paper's, each backend
normalised to its own baseline row. Rows a backend could not run are listed with the reason.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from latlab.guidelines.paper import TABLES
from latlab.guidelines.verdict import verdict_matrix
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
BACKEND_SIDE_COLUMNS = ("backend", "precision", "runtime_version", "row", "width", "built", "estimator",
                        "estimate_ms", "rel_latency", "rel_ci_low", "rel_ci_high", "paper_rel_latency",
                        "compile_s", "not_measured")
PAPER_COLOUR = "#7f7f7f"


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
    return _grouped_bars(fig, "relative to the baseline row (1 = baseline)")


def _grouped_bars(fig: go.Figure, y_title: str) -> go.Figure:
    """The layout every guideline bar figure shares: grouped bars, y title, legend below."""
    fig.update_yaxes(title_text=y_title, row=1, col=1)
    fig.update_layout(barmode="group", height=FIG_HEIGHT, margin={"t": 60}, legend={"orientation": "h", "y": -0.2})
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


def backends_of(df: pd.DataFrame) -> list[str]:
    """The backends of a guideline table in run order (``[]`` for a table without a ``backend`` column)."""
    return list(dict.fromkeys(df["backend"].astype(str))) if "backend" in df.columns else []


def backend_figure(df: pd.DataFrame, verdicts: pd.DataFrame | None) -> go.Figure:
    """Grouped bars per row, one subplot per width: each backend's relative latency (with its CI) and the
    paper's, all relative to the baseline row of the same backend and width."""
    widths = sorted(df["width"].unique(), key=str)
    backends = backends_of(df)
    titles = []
    for w in widths:
        words = []
        if verdicts is not None:
            for b in backends:
                match = verdicts[(verdicts["width"].astype(str) == str(w)) & (verdicts["backend"] == b)]
                if len(match):
                    words.append(f"{b}: {match.iloc[0]['verdict']}")
        titles.append(f"×{w}" + (f" ({'; '.join(words)})" if words else ""))
    fig = make_subplots(rows=1, cols=len(widths), shared_yaxes=True, subplot_titles=titles,
                        horizontal_spacing=0.04)
    for c, w in enumerate(widths, start=1):
        at_width = df[df["width"] == w]
        for i, b in enumerate(backends):
            part = at_width[at_width["backend"] == b]
            err = {"type": "data", "symmetric": False, "thickness": 1.5, "width": 4,
                   "array": (part["rel_ci_high"] - part["rel_latency"]).clip(lower=0).fillna(0).tolist(),
                   "arrayminus": (part["rel_latency"] - part["rel_ci_low"]).clip(lower=0).fillna(0).tolist()}
            fig.add_trace(go.Bar(x=part["row"].astype(str), y=part["rel_latency"], name=b, legendgroup=b,
                                 showlegend=c == 1, marker_color=COLOURS[i % len(COLOURS)], error_y=err,
                                 hovertemplate="%{x}: %{y:.3f}× baseline<extra>" + b + f" ×{w}</extra>"),
                          row=1, col=c)
        paper = at_width.drop_duplicates("row")
        fig.add_trace(go.Bar(x=paper["row"].astype(str), y=paper["paper_rel_latency"], name="paper",
                             legendgroup="paper", showlegend=c == 1, marker_color=PAPER_COLOUR, opacity=0.6,
                             hovertemplate="%{x}: %{y:.3f}× baseline<extra>paper" + f" ×{w}</extra>"),
                      row=1, col=c)
        fig.add_hline(y=1.0, line_dash="dot", line_color="#555", row=1, col=c)
    return _grouped_bars(fig, "latency relative to the baseline row (1 = baseline)")


def _matrix_html(verdicts: pd.DataFrame) -> str:
    """The verdict matrix as an HTML table, one coloured cell per (guideline, width, backend)."""
    matrix = verdict_matrix(verdicts)
    backends = [c for c in matrix.columns if c not in ("guideline", "width")]
    precision = dict(zip(verdicts["backend"].astype(str), verdicts.get("precision", pd.Series(dtype=str)),
                         strict=False))
    head = "".join(f"<th>{esc(b)}<br><span class='caption'>{esc(precision.get(b, ''))}</span></th>"
                   for b in backends)
    body = []
    for r in matrix.to_dict(orient="records"):
        width = "all widths" if str(r["width"]) == "all" else f"×{esc(r['width'])}"
        cells = "".join(f'<td class="text" style="color:{VERDICT_COLOURS.get(str(r[b]), "#57606a")}">'
                        f"<b>{esc(r[b])}</b></td>" for b in backends)
        body.append(f"<tr><th>{esc(r['guideline'])}</th><td class='text'>{width}</td>{cells}</tr>")
    return (f"<table class='df'><thead><tr><th>guideline</th><th>width</th>{head}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table>")


def _backend_verdicts_html(rows: pd.DataFrame) -> str:
    items = []
    for r in rows.to_dict(orient="records"):
        colour = VERDICT_COLOURS.get(str(r["verdict"]), "#57606a")
        width = "all widths" if str(r["width"]) == "all" else f"×{esc(r['width'])}"
        items.append(f'<li><b>{esc(r["backend"])}</b> {width}: <b style="color:{colour}">{esc(r["verdict"])}</b>'
                     f'<br><span class="caption">{esc(r.get("reason", ""))}</span></li>')
    return "<ul>" + "".join(items) + "</ul>"


def _build_combined(page: Page, run: Run, df: pd.DataFrame, vdf: pd.DataFrame | None) -> None:
    """The several-backend view of one run: verdict matrix, then one figure and table per guideline."""
    if vdf is not None and "backend" in vdf.columns:
        page.heading("Verdicts per runtime", level=3)
        page.raw(_matrix_html(vdf))
        page.note("Each backend's latencies are relative to its own baseline row at the same width: the "
                  "question is whether the guideline's ordering survives the runtime, not which runtime is "
                  "faster. 'not measured': the backend could not run the baseline row (or any other row).")
    for g, part in df.groupby("guideline", sort=True):
        page.heading(_title(str(g)), level=3)
        gv = vdf[vdf["guideline"] == g] if vdf is not None else None
        if gv is not None and len(gv) and "backend" in gv.columns:
            page.raw(_backend_verdicts_html(gv))
        page.figure(backend_figure(part, gv), name=f"{run.path.name}-{g}-backends",
                    caption="One bar per backend (and the paper, grey), each relative to that backend's "
                    "baseline row at the same width; whiskers: 95 % paired-bootstrap CI of the measured "
                    "ratio. A missing bar: the backend could not run that configuration.")
        page.table(part[[c for c in BACKEND_SIDE_COLUMNS if c in part.columns]])
    if "not_measured" in df.columns:
        missing = df[df["not_measured"].fillna("").astype(str) != ""]
        for r in missing.to_dict(orient="records"):
            page.note(f"not measured: {r['backend']} {r['guideline']} {r['row']} ×{r['width']}: "
                      f"{r['not_measured']}", warn=True)


def _build_single(page: Page, run: Run, tables: dict[str, pd.DataFrame], vdf: pd.DataFrame | None) -> None:
    """The one-backend view of one run: per guideline its verdicts, figure and side-by-side table."""
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


def build(page: Page, runs: list[Run]) -> None:
    """Add one section per guideline per run to ``page`` (the combined view for a several-backend run)."""
    for run in runs:
        settings = run.meta.get("settings") if isinstance(run.meta.get("settings"), dict) else {}
        tables = {n: df for n, df in run.tables_with(TABLE_COLUMNS).items() if len(df)}
        everything = pd.concat([df for _n, df in sorted(tables.items())], ignore_index=True) if tables else None
        several = everything is not None and len(backends_of(everything)) > 1
        page.heading(f"Guideline run {run.path.name}")
        keys = ["imgsz", "batch", "platform", "estimator", "quick"]
        if several:
            keys.insert(0, "backend")
        add_run_header(page, run, extras={k: settings[k] for k in keys if k in settings})
        verdicts = run.first_with(VERDICT_TABLE_COLUMNS, prefer=("verdicts",))
        vdf = verdicts[1] if verdicts is not None and "row" not in verdicts[1].columns else None
        if everything is None:
            page.note(f"{run.path} has no guideline table (columns {', '.join(sorted(TABLE_COLUMNS))}).",
                      warn=True)
            continue
        for w in run.meta.get("warnings") or []:
            page.note(str(w), warn=True)
        if several:
            _build_combined(page, run, everything, vdf)
        else:
            _build_single(page, run, tables, vdf)
        subs = run.meta.get("substitutions") or []
        if subs:
            page.note("Substitutions: " + "; ".join(map(str, subs)))
        if run.meta.get("citation"):
            page.paragraph(f"Paper numbers: {run.meta['citation']}")
