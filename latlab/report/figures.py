"""Figure helpers shared by the page builders: colours, rank correlation, latency labels, run headers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from latlab.report.html import Page
from latlab.report.loaders import Run

GREY = "#b0b0b0"
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FIG_HEIGHT = 460


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of the finite pairs, NaN with fewer than 3 pairs or a constant side."""
    from scipy.stats import spearmanr  # start-up: scipy.stats stays out of the CLI and reports, ≈0.6 s

    a = np.asarray(x, dtype=float)
    b = np.asarray(y, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if a.size < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def rho_text(rho: float, n: int) -> str:
    """``Spearman ρ = 0.83 (n = 12)``, or why there is none."""
    if math.isnan(rho):
        return f"Spearman ρ n/a (n = {n})"
    return f"Spearman ρ = {rho:.2f} (n = {n})"


def estimator_of(df: pd.DataFrame, meta: Mapping[str, Any] | None = None) -> str:
    """The latency statistic a table's ``estimate_ms`` holds (``estimator`` column or meta), else 'estimate'."""
    if "estimator" in df.columns and df["estimator"].notna().any():
        return str(df["estimator"].dropna().iloc[0])
    if meta and meta.get("estimator"):
        return str(meta["estimator"])
    return "estimate"


def latency_column(df: pd.DataFrame) -> str | None:
    """The latency column to plot: ``estimate_ms`` when present, else ``median_ms``."""
    for col in ("estimate_ms", "median_ms", "mean_ms", "latency_ms"):
        if col in df.columns:
            return col
    return None


def ci_arrays(df: pd.DataFrame, value: str, low: str = "ci_low_ms", high: str = "ci_high_ms"
              ) -> dict[str, Any] | None:
    """plotly ``error_y``/``error_x`` dict from CI bound columns, or None when the table has none."""
    if low not in df.columns or high not in df.columns:
        return None
    v = df[value].astype(float)
    plus = (df[high].astype(float) - v).clip(lower=0)
    minus = (v - df[low].astype(float)).clip(lower=0)
    return {"type": "data", "symmetric": False, "array": plus.fillna(0).tolist(),
            "arrayminus": minus.fillna(0).tolist(), "thickness": 1.2, "width": 3}


def add_run_header(page: Page, run: Run, extras: Mapping[str, Any] | None = None) -> None:
    """The command / time / folder / fingerprint box of ``run``."""
    page.run_header(label=run.label, command=run.command, time=run.time, path=str(run.path),
                    fingerprint=run.fingerprint, extras=extras)


def si(v: float) -> str:
    """A count with an SI prefix: 1.23 G, 45.6 M, 7.8 k."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    for div, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(v) >= div:
            return f"{v / div:.3g}{suffix}"
    return f"{v:.3g}"
