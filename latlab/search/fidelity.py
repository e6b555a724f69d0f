"""Rank fidelity of accuracy estimators: how well an estimator's ranking of architectures matches the
reference ranking (mean mAP of long reference trainings, :mod:`latlab.search.reference`).

Pure functions on arrays and DataFrames. A search only needs the *order* of candidates to be right, so the
statistics are rank correlations: Kendall's τ (tau-b, ties handled) and Spearman's ρ, each with a
percentile-bootstrap CI that resamples architectures with replacement (fixed seed, 2000 resamples, 95 %).
The *noise ceiling* is the same statistic between the two reference training seeds: no estimator can be
expected to agree with the reference better than the reference agrees with itself.

``fidelity_table(reference, estimates)`` is the benchmark's table, one row per estimator:

=====================  =========================================================================================
``estimator``          estimator name (``noise_ceiling``: reference seed 0 vs seed 1)
``kind``               the estimator's kind (training, zero-cost, weight-sharing, baseline, composite, ceiling)
``n``                  architectures with both a finite score and a reference mAP
``kendall_tau``        Kendall τ-b of score vs reference mean mAP; ``tau_ci_low``/``tau_ci_high`` its CI
``spearman_rho``       Spearman ρ; ``rho_ci_low``/``rho_ci_high`` its CI
``cost_s_per_candidate`` mean CPU seconds per candidate (``Estimate.cost_s``; NaN for the ceiling)
``beats_params``       τ > the ``params`` baseline's τ (NA when there is no ``params`` row)
=====================  =========================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from latlab.errors import LatlabError

N_BOOT = 2000
CONFIDENCE = 0.95
BOOT_SEED = 0
CEILING = "noise_ceiling"
PARAMS = "params"
TABLE_COLUMNS = ("estimator", "kind", "n", "kendall_tau", "tau_ci_low", "tau_ci_high", "spearman_rho",
                 "rho_ci_low", "rho_ci_high", "cost_s_per_candidate", "beats_params")
ESTIMATE_COLUMNS = ("estimator", "kind", "name", "score", "cost_s")
_CHUNK = 250  # bootstrap resamples evaluated at once (memory: chunk × n × n)

Statistic = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if a.shape != b.shape or a.ndim != 1:
        raise LatlabError(f"rank correlation needs two equally long 1-D sequences, got {a.shape} and {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    return a[ok], b[ok]


def _degenerate(a: np.ndarray, b: np.ndarray) -> bool:
    return a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b of the finite pairs (scipy); NaN with fewer than 2 pairs or a constant side."""
    a, b = _finite_pairs(x, y)
    if _degenerate(a, b):
        return float("nan")
    return float(stats.kendalltau(a, b, variant="b").statistic)


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ of the finite pairs (scipy; average ranks for ties); NaN when degenerate."""
    a, b = _finite_pairs(x, y)
    if _degenerate(a, b) or a.size < 3:
        return float("nan")
    return float(stats.spearmanr(a, b).statistic)


def _tau_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """τ-b of each row pair of [B, n] arrays (the same formula scipy uses, vectorised over rows).

    Over the pairs i < j: S = Σ sign(xᵢ−xⱼ)·sign(yᵢ−yⱼ), n₁/n₂ = pairs not tied in x / in y,
    τ-b = S / √(n₁ n₂). Rows with n₁ or n₂ = 0 give NaN."""
    iu = np.triu_indices(xs.shape[1], k=1)
    sx = np.sign(xs[:, :, None] - xs[:, None, :])[:, iu[0], iu[1]]
    sy = np.sign(ys[:, :, None] - ys[:, None, :])[:, iu[0], iu[1]]
    s = (sx * sy).sum(axis=1)
    denom = np.sqrt(np.count_nonzero(sx, axis=1).astype(float) * np.count_nonzero(sy, axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, s / np.where(denom > 0, denom, 1.0), np.nan)


def _rho_rows(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """Spearman ρ of each row pair: Pearson correlation of the average ranks (scipy.stats.rankdata)."""
    rx = stats.rankdata(xs, axis=1)
    ry = stats.rankdata(ys, axis=1)
    rx -= rx.mean(axis=1, keepdims=True)
    ry -= ry.mean(axis=1, keepdims=True)
    denom = np.sqrt((rx * rx).sum(axis=1) * (ry * ry).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (rx * ry).sum(axis=1) / np.where(denom > 0, denom, 1.0), np.nan)


STATISTICS: dict[str, Statistic] = {"kendall_tau": _tau_rows, "spearman_rho": _rho_rows}


def bootstrap_ci(x: Sequence[float], y: Sequence[float], statistic: str = "kendall_tau", *, n_boot: int = N_BOOT,
                 seed: int = BOOT_SEED, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Percentile-bootstrap CI of a rank correlation: resample the (x, y) pairs (architectures) with
    replacement ``n_boot`` times with ``numpy.random.default_rng(seed)``; resamples where the statistic is
    undefined (one side constant) are dropped. (NaN, NaN) when fewer than 3 finite pairs."""
    if statistic not in STATISTICS:
        raise LatlabError(f"statistic {statistic!r}: expected one of {', '.join(STATISTICS)}")
    a, b = _finite_pairs(x, y)
    n = a.size
    if n < 3 or _degenerate(a, b):
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_boot, n))
    fn = STATISTICS[statistic]
    vals = np.concatenate([fn(a[idx[i:i + _CHUNK]], b[idx[i:i + _CHUNK]]) for i in range(0, n_boot, _CHUNK)])
    vals = vals[np.isfinite(vals)]
    if not vals.size:
        return float("nan"), float("nan")
    alpha = 1.0 - confidence
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


@dataclass(frozen=True)
class RankFidelity:
    """τ and ρ of one score against one reference, with bootstrap CIs."""

    n: int
    kendall_tau: float
    tau_ci_low: float
    tau_ci_high: float
    spearman_rho: float
    rho_ci_low: float
    rho_ci_high: float

    def tau_text(self) -> str:
        """``τ = 0.62 [0.41, 0.79]`` (or ``τ n/a``)."""
        return ci_text("τ", self.kendall_tau, self.tau_ci_low, self.tau_ci_high)


def ci_text(symbol: str, value: float, low: float, high: float) -> str:
    """``τ = 0.62 [0.41, 0.79]``; ``τ n/a`` for NaN; the CI is left out when it is NaN."""
    if value is None or not math.isfinite(value):
        return f"{symbol} n/a"
    ci = f" [{low:.2f}, {high:.2f}]" if low is not None and math.isfinite(low) and math.isfinite(high) else ""
    return f"{symbol} = {value:.2f}{ci}"


def rank_fidelity(score: Sequence[float], reference: Sequence[float], *, n_boot: int = N_BOOT,
                  seed: int = BOOT_SEED, confidence: float = CONFIDENCE) -> RankFidelity:
    """Kendall τ-b and Spearman ρ of ``score`` vs ``reference`` (finite pairs) with bootstrap CIs."""
    a, b = _finite_pairs(score, reference)
    t_lo, t_hi = bootstrap_ci(a, b, "kendall_tau", n_boot=n_boot, seed=seed, confidence=confidence)
    r_lo, r_hi = bootstrap_ci(a, b, "spearman_rho", n_boot=n_boot, seed=seed, confidence=confidence)
    return RankFidelity(int(a.size), kendall_tau(a, b), t_lo, t_hi, spearman_rho(a, b), r_lo, r_hi)


def seed_columns(reference: pd.DataFrame) -> list[str]:
    """The per-seed mAP columns of a reference table (``map_seed0``, ``map_seed1``, ...), in seed order."""
    cols = [c for c in reference.columns if c.startswith("map_seed") and c[len("map_seed"):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len("map_seed"):]))


def noise_ceiling(reference: pd.DataFrame, **boot: int | float) -> RankFidelity:
    """τ and ρ (with CIs) between the first two reference seeds: how well the reference agrees with itself."""
    cols = seed_columns(reference)
    if len(cols) < 2:
        raise LatlabError(f"the noise ceiling needs two reference seeds (map_seed0, map_seed1); "
                          f"the reference table has {cols or 'none'}")
    return rank_fidelity(reference[cols[0]], reference[cols[1]], **boot)  # type: ignore[arg-type]


def _row(estimator: str, kind: str, fid: RankFidelity, cost: float) -> dict[str, object]:
    return {"estimator": estimator, "kind": kind, "n": fid.n, "kendall_tau": fid.kendall_tau,
            "tau_ci_low": fid.tau_ci_low, "tau_ci_high": fid.tau_ci_high, "spearman_rho": fid.spearman_rho,
            "rho_ci_low": fid.rho_ci_low, "rho_ci_high": fid.rho_ci_high, "cost_s_per_candidate": cost}


def fidelity_table(reference: pd.DataFrame, estimates: pd.DataFrame, *, n_boot: int = N_BOOT,
                   seed: int = BOOT_SEED, confidence: float = CONFIDENCE, ceiling: bool = True) -> pd.DataFrame:
    """One row per estimator (columns :data:`TABLE_COLUMNS`, documented in the module docstring).

    ``reference``: one row per architecture with ``name`` and ``map_mean`` (and ``map_seed0``/``map_seed1``
    for the noise ceiling), as :func:`latlab.search.reference.reference_table` returns.
    ``estimates``: long format, one row per estimator × architecture with ``estimator``, ``kind``, ``name``,
    ``score`` (higher is better) and ``cost_s``. Architectures are matched by ``name``; an estimate for a
    name the reference lacks is ignored. Rows keep the order estimators first appear in ``estimates``,
    with the noise ceiling first."""
    missing = [c for c in ("name", "map_mean") if c not in reference.columns]
    missing += [f"estimates.{c}" for c in ESTIMATE_COLUMNS if c not in estimates.columns]
    if missing:
        raise LatlabError(f"fidelity table: missing column(s) {', '.join(missing)}")
    boot = {"n_boot": n_boot, "seed": seed, "confidence": confidence}
    ref = reference.set_index("name")["map_mean"].astype(float)
    rows = []
    if ceiling and len(seed_columns(reference)) >= 2:
        rows.append(_row(CEILING, "ceiling", noise_ceiling(reference, **boot), float("nan")))
    for name, part in estimates.groupby("estimator", sort=False):
        part = part[part["name"].isin(ref.index)]
        fid = rank_fidelity(part["score"].astype(float).to_numpy(), ref.loc[part["name"]].to_numpy(), **boot)
        cost = pd.to_numeric(part["cost_s"], errors="coerce").mean() if len(part) else float("nan")
        rows.append(_row(str(name), str(part["kind"].iloc[0]) if len(part) else "", fid, float(cost)))
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS[:-1]))
    params = table.loc[table["estimator"] == PARAMS, "kendall_tau"]
    if len(params) and math.isfinite(params.iloc[0]):
        table["beats_params"] = (table["kendall_tau"] > params.iloc[0]).astype("boolean")
        table.loc[~np.isfinite(table["kendall_tau"].astype(float)), "beats_params"] = pd.NA
    else:
        table["beats_params"] = pd.Series([pd.NA] * len(table), dtype="boolean")
    return table[list(TABLE_COLUMNS)]


def lookup(table: pd.DataFrame, estimator: str) -> RankFidelity | None:
    """The row of ``estimator`` in a fidelity table as a :class:`RankFidelity`, or None."""
    rows = table[table["estimator"].astype(str) == estimator]
    if not len(rows):
        return None
    r = rows.iloc[0]
    return RankFidelity(int(r["n"]), *(float(r[c]) for c in TABLE_COLUMNS[3:9]))
