"""Normalise a guideline table to its baseline row and decide whether the guideline holds on this device.

Devices differ, so only relative speed is compared: every latency (measured and published) is divided by
its table's baseline row at the same width (1:1, g=1, 1-fragment, ReLU+shortcut). ``rel_latency`` > 1 means
slower than the baseline; the paper's ``paper_rel_latency`` is baseline throughput / row throughput.

The verdict for one guideline at one width (:func:`decide`) uses each non-baseline row's measured ratio to
the baseline, its 95 % CI (paired bootstrap over interleaved rounds, from ``compare.ratio_ci``) and the trend:

- a row **supports** the guideline when it moves in the predicted direction (slower for G1-G3, faster for
  G4's rows without ReLU/shortcut) by more than ``min_effect`` (default 2 %) *and* its CI excludes 1;
- a row **contradicts** it when the same holds in the opposite direction;
- ``trend_rho`` = Spearman correlation between the row's key (c2/c1, g, fragments, element-wise kinds
  removed) and the measured latency, signed so that +1 is exactly the predicted order.

**holds**: every row supports and ``trend_rho`` > 0. **does not hold**: no row supports. **partly**:
anything in between. The same rule applied to the paper's numbers (no CI: a point) gives ``paper_verdict``.
Nothing here is tuned per guideline beyond the predicted direction.

A row a backend could not run (``rel_latency`` NaN, the reason in ``not_measured``) is left out of the
verdict and named in its reason; without the baseline row, or without any other row, the verdict is
**not measured**. A table holding several backends (a ``backend`` column) gets one verdict per backend;
:func:`verdict_matrix` lays them side by side.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy import stats as sstats

HOLDS, PARTLY, DOES_NOT_HOLD, NOT_MEASURED = "holds", "partly", "does not hold", "not measured"
MIN_EFFECT = 0.02
# +1: the guideline predicts the non-baseline rows are slower than the baseline; -1: faster.
DIRECTION = {"G1": 1, "G2": 1, "G3": 1, "G4": -1}
BASELINE_NAME = {"G1": "1:1", "G2": "g=1", "G3": "1-fragment", "G4": "ReLU+shortcut"}

# the columns that say which runtime a verdict is for, in front of VERDICT_COLUMNS when the table has them
BACKEND_COLUMNS = ("backend", "precision")
VERDICT_COLUMNS = ("guideline", "width", "verdict", "trend_rho", "n_rows", "n_support", "n_contradict",
                   "peak_rel_latency", "paper_verdict", "paper_trend_rho", "reason")


def normalise(df: pd.DataFrame) -> pd.DataFrame:
    """Add ``rel_latency``, ``paper_rel_latency``, ``madds_rel``, ``mac_rel`` per (guideline, width), and
    ``rel_latency_per_madd`` = rel_latency / madds_rel (the slowdown with the small FLOPs differences
    between rows taken out; the verdict uses ``rel_latency``, as the paper compares raw speed).

    Needs columns ``guideline``, ``width``, ``is_baseline``, ``estimate_ms``, ``paper_throughput``,
    ``madds``, ``mac_bytes``. ``rel_ci_low``/``rel_ci_high`` (the ratio CI) are kept when present, else set
    to ``rel_latency`` (no CI known).
    """
    out = df.copy()
    for col in ("rel_latency", "paper_rel_latency", "madds_rel", "mac_rel"):
        out[col] = np.nan
    for _, idx in out.groupby(["guideline", "width"], sort=False).groups.items():
        part = out.loc[idx]
        base = part[part["is_baseline"]]
        if base.empty:
            continue
        b = base.iloc[0]
        out.loc[idx, "rel_latency"] = part["estimate_ms"] / b["estimate_ms"]
        out.loc[idx, "paper_rel_latency"] = b["paper_throughput"] / part["paper_throughput"]
        out.loc[idx, "madds_rel"] = part["madds"] / b["madds"]
        out.loc[idx, "mac_rel"] = part["mac_bytes"] / b["mac_bytes"]
    for col in ("rel_ci_low", "rel_ci_high"):
        if col not in out:
            out[col] = out["rel_latency"]
    out["rel_latency_per_madd"] = out["rel_latency"] / out["madds_rel"]
    return out


@dataclass
class Verdict:
    """Verdict of one guideline at one width (or ``width="all"`` for the combination over widths).

    ``peak_rel_latency`` is the measured relative latency of the row that moved most in the predicted
    direction (the largest for G1-G3, the smallest for G4); ``n_support``/``n_contradict`` count rows.
    """

    guideline: str
    width: int | str
    verdict: str
    trend_rho: float
    n_rows: int
    n_support: int
    n_contradict: int
    peak_rel_latency: float
    paper_verdict: str
    paper_trend_rho: float
    reason: str

    def to_row(self) -> dict[str, object]:
        return asdict(self)


def spearman(keys: list[float] | np.ndarray, values: list[float] | np.ndarray) -> float:
    """Spearman's ρ (nan when either side is constant or fewer than 3 points)."""
    k, v = np.asarray(keys, dtype=float), np.asarray(values, dtype=float)
    if k.size < 3 or np.ptp(k) == 0 or np.ptp(v) == 0:
        return float("nan")
    return float(sstats.spearmanr(k, v).statistic)


def _classify(direction: int, rel: float, lo: float, hi: float, min_effect: float) -> int:
    """+1 supports, -1 contradicts, 0 within noise / too small."""
    effect = direction * (rel - 1.0)
    if abs(effect) <= min_effect:
        return 0
    excludes_one = lo > 1.0 if rel > 1.0 else hi < 1.0
    if not excludes_one:
        return 0
    return 1 if effect > 0 else -1


def _fmt_rho(rho: float) -> str:
    return "n/a" if math.isnan(rho) else f"{rho:+.2f}"


def _missing_text(rows: pd.DataFrame) -> str:
    """``"g=8 (why); g=4 (why)"``: the rows a backend could not run (every NaN row when no reasons are given)."""
    if "not_measured" not in rows:
        return "; ".join(map(str, rows["row"]))
    return "; ".join(f"{r} ({why})" for r, why in zip(rows["row"], rows["not_measured"], strict=True)
                     if isinstance(why, str) and why)


def decide(guideline: str, rows: pd.DataFrame, *, min_effect: float = MIN_EFFECT,
           width: int | str = "") -> Verdict:
    """Verdict for one table at one width. ``rows`` needs ``row``, ``key``, ``is_baseline``,
    ``rel_latency``, ``rel_ci_low``, ``rel_ci_high`` and optionally ``paper_rel_latency`` and
    ``not_measured`` (why a row with a NaN ``rel_latency`` was not measured)."""
    direction = DIRECTION[guideline]
    base_name = BASELINE_NAME[guideline]
    missing = rows[rows["rel_latency"].isna()]
    rows = rows[rows["rel_latency"].notna()]
    others = rows[~rows["is_baseline"].astype(bool)]
    if not rows["is_baseline"].astype(bool).any() or others.empty:
        what = f"the baseline row {base_name}" if not rows["is_baseline"].astype(bool).any() else "every other row"
        return Verdict(guideline, width, NOT_MEASURED, math.nan, len(others), 0, 0, math.nan, "", math.nan,
                       f"{what} could not be measured, so nothing is compared. Not measured: "
                       f"{_missing_text(missing)}.")
    cls = [_classify(direction, r.rel_latency, r.rel_ci_low, r.rel_ci_high, min_effect)
           for r in others.itertuples()]
    n, n_sup, n_con = len(cls), sum(c == 1 for c in cls), sum(c == -1 for c in cls)
    rho = direction * spearman(rows["key"], rows["rel_latency"])
    verdict = _label(n, n_sup, rho)
    word = "slower" if direction > 0 else "faster"
    effects = [f"{r.row} {r.rel_latency:.2f}× [{r.rel_ci_low:.2f}, {r.rel_ci_high:.2f}]" for r in others.itertuples()]
    if verdict == HOLDS:
        reason = (f"all {n} rows are {word} than {base_name} by more than {min_effect:.0%} with CIs excluding 1 "
                  f"({'; '.join(effects)}), and latency follows the predicted order (ρ {_fmt_rho(rho)}).")
    elif verdict == DOES_NOT_HOLD:
        extra = f"; {n_con} row(s) go the other way" if n_con else ""
        reason = (f"no row is {word} than {base_name} by more than {min_effect:.0%} with a CI excluding 1 "
                  f"({'; '.join(effects)}){extra}; trend ρ {_fmt_rho(rho)}.")
    else:
        sup = [e for e, c in zip(effects, cls, strict=True) if c == 1]
        why = (f"{n_sup} of {n} rows {'is' if n_sup == 1 else 'are'} {word} than {base_name} beyond the noise "
               f"({'; '.join(sup)})"
               if n_sup else f"no row is {word} than {base_name} beyond the noise")
        rest = f", {n_con} {'goes' if n_con == 1 else 'go'} the other way" if n_con else ""
        trend = "" if n_sup < n else " but latency does not follow the predicted order"
        reason = f"{why}{rest}{trend}; trend ρ {_fmt_rho(rho)}."
    peak = float(others["rel_latency"].max()) if direction > 0 else float(others["rel_latency"].min())
    p_verdict, p_rho = "", float("nan")
    if "paper_rel_latency" in rows and rows["paper_rel_latency"].notna().all():
        p_cls = [_classify(direction, v, v, v, min_effect) for v in others["paper_rel_latency"]]
        p_rho = direction * spearman(rows["key"], rows["paper_rel_latency"])
        p_verdict = _label(len(p_cls), sum(c == 1 for c in p_cls), p_rho)
    if len(missing):
        reason += f" Not measured (left out): {_missing_text(missing)}."
    return Verdict(guideline, width, verdict, rho, n, n_sup, n_con, peak if n else float("nan"),
                   p_verdict, p_rho, reason)


def _label(n: int, n_support: int, rho: float) -> str:
    if n and n_support == n and not math.isnan(rho) and rho > 0:
        return HOLDS
    if n_support == 0:
        return DOES_NOT_HOLD
    return PARTLY


def combine(guideline: str, verdicts: list[Verdict]) -> Verdict:
    """One verdict over several widths: holds if all hold, does not hold if none holds even partly
    (widths that could not be measured left out; not measured when none could)."""
    labels = [v.verdict for v in verdicts if v.verdict != NOT_MEASURED]
    if not labels:
        overall = NOT_MEASURED
    elif all(v == HOLDS for v in labels):
        overall = HOLDS
    elif all(v == DOES_NOT_HOLD for v in labels):
        overall = DOES_NOT_HOLD
    else:
        overall = PARTLY
    reason = " ".join(f"×{v.width}: {v.verdict}." for v in verdicts)
    p_labels = [v.paper_verdict for v in verdicts if v.paper_verdict]
    if p_labels and all(v == HOLDS for v in p_labels):
        p_overall = HOLDS
    elif p_labels and all(v == DOES_NOT_HOLD for v in p_labels):
        p_overall = DOES_NOT_HOLD
    else:
        p_overall = PARTLY if p_labels else ""
    rhos = [v.trend_rho for v in verdicts if not math.isnan(v.trend_rho)]
    p_rhos = [v.paper_trend_rho for v in verdicts if not math.isnan(v.paper_trend_rho)]
    rels = [v.peak_rel_latency for v in verdicts if not math.isnan(v.peak_rel_latency)]
    direction = DIRECTION[guideline]
    peak = (max(rels) if direction > 0 else min(rels)) if rels else float("nan")
    return Verdict(guideline, "all", overall, float(np.mean(rhos)) if rhos else float("nan"),
                   sum(v.n_rows for v in verdicts), sum(v.n_support for v in verdicts),
                   sum(v.n_contradict for v in verdicts), peak, p_overall,
                   float(np.mean(p_rhos)) if p_rhos else float("nan"), reason)


def _verdict_rows(df: pd.DataFrame, min_effect: float) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for g, part in df.groupby("guideline", sort=False):
        per_width = [decide(str(g), sub, min_effect=min_effect, width=int(w))
                     for w, sub in part.groupby("width", sort=True)]
        rows.extend(v.to_row() for v in per_width)
        if len(per_width) > 1:
            rows.append(combine(str(g), per_width).to_row())
    return rows


def verdict_table(df: pd.DataFrame, *, min_effect: float = MIN_EFFECT) -> pd.DataFrame:
    """Verdicts for every (guideline, width) of a normalised table, plus one ``width="all"`` row each;
    one set per backend (with ``backend`` and ``precision`` columns first) when the table has them."""
    keys = [c for c in BACKEND_COLUMNS if c in df.columns]
    if not keys:
        return pd.DataFrame(_verdict_rows(df, min_effect), columns=list(VERDICT_COLUMNS))
    rows = [{**dict(zip(keys, key, strict=True)), **r}
            for key, part in df.groupby(keys, sort=False) for r in _verdict_rows(part, min_effect)]
    return pd.DataFrame(rows, columns=keys + list(VERDICT_COLUMNS))


def verdict_matrix(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Verdicts side by side: one row per (guideline, width), one column per backend (in run order),
    each cell the verdict under that backend (empty where a backend has no verdict for that row)."""
    v = verdicts.assign(width=verdicts["width"].astype(str))
    if "backend" not in v.columns:
        v = v.assign(backend="")
    backends = list(dict.fromkeys(v["backend"]))
    index = list(dict.fromkeys(zip(v["guideline"], v["width"], strict=True)))
    cells = {(g, w, b): verdict for g, w, b, verdict in zip(v["guideline"], v["width"], v["backend"], v["verdict"],
                                                            strict=True)}
    return pd.DataFrame([{"guideline": g, "width": w, **{b: cells.get((g, w, b), "") for b in backends}}
                         for g, w in index], columns=["guideline", "width", *backends])
