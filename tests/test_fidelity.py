"""Fidelity statistics (latlab.search.fidelity) against hand-computed values on a hand-made table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from latlab.errors import LatlabError
from latlab.search import fidelity as fid

REF = [0.10, 0.20, 0.30, 0.40, 0.50]           # architectures a..e, reference mean mAP
SCORE = [1.0, 3.0, 2.0, 5.0, 4.0]              # an estimator's scores for a..e
# Pairs (10): every pair is concordant except (b, c) (3 > 2 but 0.2 < 0.3) and (d, e) (5 > 4 but 0.4 < 0.5):
# C = 8, D = 2, no ties → τ = (8 − 2) / 10 = 0.6.
# Ranks of SCORE: 1 3 2 5 4, of REF: 1 2 3 4 5; d = 0 1 −1 1 −1, Σd² = 4 → ρ = 1 − 6·4 / (5·(25 − 1)) = 0.8.
TAU_HAND, RHO_HAND = 0.6, 0.8


def test_kendall_and_spearman_match_hand_counts():
    assert fid.kendall_tau(SCORE, REF) == pytest.approx(TAU_HAND)
    assert fid.spearman_rho(SCORE, REF) == pytest.approx(RHO_HAND)


def test_ties_use_tau_b_and_average_ranks():
    score = [1.0, 2.0, 2.0, 3.0, 4.0]
    # (b, c) tied in the score: n1 = 9 untied pairs in x, n2 = 10 in y, 9 concordant, 0 discordant:
    # τ-b = 9 / √(9 · 10).
    assert fid.kendall_tau(score, REF) == pytest.approx(9 / math.sqrt(90))
    # average ranks 1, 2.5, 2.5, 4, 5 against 1..5: centred products sum 9.5, Σdx² = 9.5, Σdy² = 10.
    assert fid.spearman_rho(score, REF) == pytest.approx(9.5 / math.sqrt(9.5 * 10))


def test_identical_and_reversed_rankings():
    assert fid.kendall_tau(REF, REF) == pytest.approx(1.0)
    assert fid.spearman_rho([10, 20, 30, 40, 50], REF) == pytest.approx(1.0)
    assert fid.kendall_tau(REF[::-1], REF) == pytest.approx(-1.0)
    assert fid.spearman_rho(REF[::-1], REF) == pytest.approx(-1.0)


def test_degenerate_inputs_give_nan_and_nonfinite_pairs_are_dropped():
    assert math.isnan(fid.kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(fid.kendall_tau([1], [2]))
    assert fid.kendall_tau([*SCORE, float("nan")], [*REF, 0.9]) == pytest.approx(TAU_HAND)
    with pytest.raises(LatlabError):
        fid.kendall_tau([1, 2], [1, 2, 3])


def test_vectorised_rows_match_scipy_with_ties():
    rng = np.random.default_rng(3)
    xs = rng.integers(0, 4, size=(30, 9)).astype(float)  # many ties
    ys = rng.integers(0, 5, size=(30, 9)).astype(float)
    taus, rhos = fid._tau_rows(xs, ys), fid._rho_rows(xs, ys)
    for i in range(30):
        if np.ptp(xs[i]) == 0 or np.ptp(ys[i]) == 0:
            continue
        assert taus[i] == pytest.approx(stats.kendalltau(xs[i], ys[i]).statistic)
        assert rhos[i] == pytest.approx(stats.spearmanr(xs[i], ys[i]).statistic)


def test_bootstrap_ci_contains_point_and_is_deterministic():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=16)
    score = ref + rng.normal(scale=0.7, size=16)
    for statistic, point in (("kendall_tau", fid.kendall_tau(score, ref)),
                             ("spearman_rho", fid.spearman_rho(score, ref))):
        lo, hi = fid.bootstrap_ci(score, ref, statistic, seed=0)
        assert lo <= point <= hi
        assert -1 <= lo < hi <= 1
        assert (lo, hi) == fid.bootstrap_ci(score, ref, statistic, seed=0)
        assert (lo, hi) != fid.bootstrap_ci(score, ref, statistic, seed=1)
    with pytest.raises(LatlabError):
        fid.bootstrap_ci(score, ref, "pearson")


def _reference() -> pd.DataFrame:
    s0 = [0.11, 0.19, 0.31, 0.38, 0.51]
    s1 = [0.09, 0.21, 0.29, 0.42, 0.49]  # mean of s0, s1 = REF; seed 0 and seed 1 rank a..e identically
    return pd.DataFrame({"name": list("abcde"), "map_seed0": s0, "map_seed1": s1,
                         "map_mean": [(a + b) / 2 for a, b in zip(s0, s1, strict=True)]})


def _estimates() -> pd.DataFrame:
    rows = []
    for est, kind, scores in (("toy", "zero-cost", [1, 2, 3, 4, 5]), ("params", "baseline", SCORE),
                              ("rev", "zero-cost", [5, 4, 3, 2, 1])):
        rows += [{"estimator": est, "kind": kind, "name": n, "score": float(s), "cost_s": 0.5}
                 for n, s in zip("abcde", scores, strict=True)]
    rows.append({"estimator": "toy", "kind": "zero-cost", "name": "zz-not-in-reference", "score": 9.0,
                 "cost_s": 0.5})
    return pd.DataFrame(rows)


def test_fidelity_table_on_hand_made_table():
    table = fid.fidelity_table(_reference(), _estimates(), n_boot=300)
    assert tuple(table.columns) == fid.TABLE_COLUMNS
    assert list(table["estimator"]) == ["noise_ceiling", "toy", "params", "rev"]
    t = table.set_index("estimator")
    assert t.loc["noise_ceiling", "kendall_tau"] == pytest.approx(1.0)
    assert t.loc["toy", "kendall_tau"] == pytest.approx(1.0)
    assert t.loc["toy", "n"] == 5  # the name the reference lacks is ignored
    assert t.loc["params", "kendall_tau"] == pytest.approx(TAU_HAND)
    assert t.loc["params", "spearman_rho"] == pytest.approx(RHO_HAND)
    assert t.loc["rev", "kendall_tau"] == pytest.approx(-1.0)
    assert t.loc["toy", "cost_s_per_candidate"] == pytest.approx(0.5)
    assert math.isnan(t.loc["noise_ceiling", "cost_s_per_candidate"])
    assert bool(t.loc["toy", "beats_params"]) and not bool(t.loc["rev", "beats_params"])
    assert not bool(t.loc["params", "beats_params"])
    assert t.loc["params", "tau_ci_low"] <= TAU_HAND <= t.loc["params", "tau_ci_high"]
    again = fid.fidelity_table(_reference(), _estimates(), n_boot=300)
    pd.testing.assert_frame_equal(table, again)
    got = fid.lookup(table, "params")
    assert got is not None and got.kendall_tau == pytest.approx(TAU_HAND)
    assert got.tau_text().startswith("τ = 0.60 [")
    assert fid.lookup(table, "nope") is None


def test_fidelity_table_without_params_or_seeds():
    est = _estimates()
    table = fid.fidelity_table(_reference()[["name", "map_mean"]], est[est["estimator"] != "params"], n_boot=50)
    assert list(table["estimator"]) == ["toy", "rev"]
    assert table["beats_params"].isna().all()
    with pytest.raises(LatlabError, match="map_mean"):
        fid.fidelity_table(pd.DataFrame({"name": ["a"]}), est)
    with pytest.raises(LatlabError, match="two reference seeds"):
        fid.noise_ceiling(_reference()[["name", "map_mean", "map_seed0"]])
