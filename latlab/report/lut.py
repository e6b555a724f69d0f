"""Latency-table page: predicted vs measured latency with the ±10 % band and the accuracy figures.

Reads ``lut`` runs (``latlab lut check``, :mod:`latlab.lut.check`, job ``lut-check``): ``models.csv`` with
``predicted_ms`` (calibrated prediction) and ``measured_ms`` (optional ``sum_ms``, the raw block sum,
drawn too; optional measured CI ``measured_ci_low_ms``/``measured_ci_high_ms``; label ``arch``/``model``)
and ``metrics.csv`` (one row per predictor: ``within_5_pct``, ``within_10_pct``, ``mape_pct``, ``spearman``,
``kendall``). The accuracy of the plotted predictions is also computed here (:func:`accuracy`) so the
page never shows a figure without its numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from latlab.report.figures import COLOURS, FIG_HEIGHT, add_run_header, ci_arrays, spearman
from latlab.report.html import Page
from latlab.report.loaders import LUT_CHECK_COLUMNS, Run

BAND = 0.10
LABEL_COLUMNS = ("model", "arch", "name", "config", "trial", "layer")


def accuracy(predicted: np.ndarray, measured: np.ndarray, band: float = BAND) -> dict[str, float]:
    """How well predictions match measurements: share within ±band, mean/max absolute % error, bias, ρ.

    The error of a row is ``(predicted - measured) / measured``.
    """
    p = np.asarray(predicted, dtype=float)
    m = np.asarray(measured, dtype=float)
    ok = np.isfinite(p) & np.isfinite(m) & (m > 0)
    p, m = p[ok], m[ok]
    if not len(p):
        return {"n": 0}
    err = (p - m) / m
    return {"n": len(p), f"within ±{band:.0%}": float(np.mean(np.abs(err) <= band)),
            "mean abs error %": float(100 * np.mean(np.abs(err))), "max abs error %": float(100 * np.max(np.abs(err))),
            "mean error % (bias)": float(100 * np.mean(err)), "Spearman ρ": spearman(p, m)}


def _label_column(df: pd.DataFrame) -> str | None:
    return next((c for c in LABEL_COLUMNS if c in df.columns), None)


def check_figure(df: pd.DataFrame, band: float = BAND) -> go.Figure:
    """Predicted (x) vs measured (y) latency, the y = x line and the ±band around it."""
    p = df["predicted_ms"].astype(float)
    m = df["measured_ms"].astype(float)
    tops = [p.max(), m.max()] + ([df["sum_ms"].astype(float).max()] if "sum_ms" in df.columns else [])
    hi = float(np.nanmax(tops)) * 1.08
    lo = 0.0
    xs = [lo, hi]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=xs + xs[::-1], y=[x * (1 + band) for x in xs] + [x * (1 - band) for x in xs[::-1]],
                             mode="lines", fill="toself", fillcolor="rgba(44,160,44,0.15)", line={"width": 0},
                             name=f"±{band:.0%} band", hoverinfo="skip"))
    fig.add_trace(go.Scatter(x=xs, y=xs, mode="lines", line={"dash": "dash", "color": "#555"}, name="y = x",
                             hoverinfo="skip"))
    label = _label_column(df)
    names = df[label].astype(str).tolist() if label else [str(i) for i in range(len(df))]
    err = 100 * (p - m) / m
    err_y = None
    for low, high in (("measured_ci_low_ms", "measured_ci_high_ms"), ("ci_low_ms", "ci_high_ms")):
        err_y = ci_arrays(df, "measured_ms", low, high)
        if err_y is not None:
            break
    inside = (err.abs() <= 100 * band).to_numpy()
    for keep, name, colour in ((inside, f"within ±{band:.0%}", COLOURS[0]),
                               (~inside, f"outside ±{band:.0%}", COLOURS[1])):
        idx = np.flatnonzero(keep)
        part_err = None
        if err_y is not None:
            part_err = {**err_y, "array": [err_y["array"][i] for i in idx],
                        "arrayminus": [err_y["arrayminus"][i] for i in idx]}
        fig.add_trace(go.Scatter(
            x=p.iloc[idx], y=m.iloc[idx], mode="markers", name=name, error_y=part_err,
            text=[names[i] for i in idx], customdata=err.iloc[idx].to_numpy().reshape(-1, 1),
            marker={"size": 9, "color": colour, "opacity": 0.85},
            hovertemplate="%{text}<br>predicted %{x:.3f} ms<br>measured %{y:.3f} ms<br>error "
                          "%{customdata[0]:+.1f} %<extra></extra>"))
    if "sum_ms" in df.columns and df["sum_ms"].notna().any():
        raw = df["sum_ms"].astype(float)
        fig.add_trace(go.Scatter(
            x=raw, y=m, mode="markers", name="raw block sum (uncalibrated)", text=names,
            marker={"size": 7, "color": "#9e9e9e", "symbol": "diamond-open"},
            hovertemplate="%{text}<br>block sum %{x:.3f} ms<br>measured %{y:.3f} ms<extra></extra>"))
    fig.update_layout(height=FIG_HEIGHT + 60, xaxis_title="predicted latency (ms, latency table)",
                      yaxis_title="measured latency (ms)", margin={"t": 30},
                      xaxis={"range": [lo, hi]}, yaxis={"range": [lo, hi]})
    return fig


def _summary_tables(run: Run) -> list[tuple[str, pd.DataFrame]]:
    out = []
    for name, df in run.all_tables().items():
        if set(df.columns) >= LUT_CHECK_COLUMNS:
            continue
        if 0 < len(df) <= 20 and any(w in name for w in ("metrics", "summary", "accuracy")):
            out.append((name, df))
    return out


def build(page: Page, runs: list[Run]) -> None:
    """Add one section per latency-table run to ``page``."""
    for run in runs:
        page.heading(f"Latency table check {run.path.name}")
        lut_id = run.meta.get("lut")
        add_run_header(page, run, extras={"table": lut_id} if lut_id else None)
        found = run.first_with(LUT_CHECK_COLUMNS, prefer=("models", "check"))
        if found is None:
            page.note("This latency-table run has no predicted-vs-measured table (columns predicted_ms, "
                      "measured_ms): run `latlab lut check` to make one. Its tables follow.", warn=True)
            for name, df in run.all_tables().items():
                page.table(df, caption=f"{name}.csv", max_rows=50)
            continue
        name, df = found
        df = df[df["predicted_ms"].notna() & df["measured_ms"].notna()].reset_index(drop=True)
        acc = accuracy(df["predicted_ms"].to_numpy(), df["measured_ms"].to_numpy())
        page.figure(check_figure(df), name=f"{run.path.name}-check",
                    caption=f"One point per architecture in {name}.csv; the shaded band is ±{BAND:.0%} around "
                    "y = x. Grey diamonds: the raw sum of per-block latencies before calibration.")
        page.table(pd.DataFrame([{k: v for k, v in acc.items()}]),
                   caption="Accuracy computed from predicted_ms and measured_ms (error = (predicted − "
                   "measured) / measured).")
        summaries = _summary_tables(run)
        for sname, sdf in summaries:
            page.table(sdf, caption=f"{sname}.csv: the accuracy figures the check recorded (percentages).")
        given: Any = run.meta.get("metrics")
        if not summaries and isinstance(given, list) and given and all(isinstance(g, dict) for g in given):
            page.table(pd.DataFrame(given), caption="Accuracy figures the check recorded (meta.json).")
        page.table(df, caption=f"{name}.csv", max_rows=100)
