"""Timer statistics, adaptive stopping and interleaved comparison, driven by a synthetic clock.

No wall-clock timing is asserted: the durations come from a fake clock that the "model" advances.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from latlab.errors import LatlabError
from latlab.profiling.compare import compare, measure_many, ratio_ci, run_interleaved
from latlab.profiling.timer import (
    ROW_COLUMNS,
    Measurement,
    Timer,
    confidence_interval,
    estimate,
    order_statistic_ranks,
)


class FakeClock:
    """A clock in seconds that only moves when a fake model runs."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def fake_model(clock: FakeClock, durations_ms, log: list | None = None, name: str = ""):
    it = itertools.cycle(durations_ms)

    def run() -> None:
        if log is not None:
            log.append(name)
        clock.t += next(it) / 1e3

    return run


# ---- statistics on fixed samples (hand-computed) ----

def test_statistics_of_one_to_ten():
    m = Measurement.from_samples([float(v) for v in range(1, 11)], estimator="p10")
    # numpy 'linear' quantiles: position (n-1)q; 1..10 → p10 at 0.9 → 1.9, q25 at 2.25 → 3.25, q75 → 7.75
    assert m.median_ms == pytest.approx(5.5)
    assert m.mean_ms == pytest.approx(5.5)
    assert m.p10_ms == pytest.approx(1.9)
    assert m.p90_ms == pytest.approx(9.1)
    assert m.iqr_ms == pytest.approx(4.5)
    # sample variance of 1..n is n(n+1)/12 = 110/12
    assert m.cv == pytest.approx(math.sqrt(110 / 12) / 5.5)
    assert m.min_ms == 1.0 and m.n == 10
    assert m.estimate_ms == pytest.approx(1.9)
    assert m.ci_valid is False  # 10 samples are too few for a distribution-free p10 lower bound


@pytest.mark.parametrize(("name", "value"), [("median", 3.0), ("p20", 1.8), ("min", 1.0), ("mean", 22.0 / 5)])
def test_estimators(name, value):
    assert estimate([5.0, 1.0, 3.0, 2.0, 11.0], name) == pytest.approx(value)


def test_unknown_estimator():
    with pytest.raises(LatlabError, match="unknown estimator 'p50'"):
        estimate([1.0, 2.0], "p50")


def _binom_cdf(k: int, n: int, q: float) -> float:
    return sum(math.comb(n, i) * q**i * (1 - q) ** (n - i) for i in range(k + 1))


def _ppf(p: float, n: int, q: float) -> int:
    return next(k for k in range(n + 1) if _binom_cdf(k, n, q) >= p)


def test_order_statistic_ranks_median_of_100():
    # textbook (Conover): 95 % CI of the median of 100 samples is [x_(40), x_(61)] (1-based)
    assert order_statistic_ranks(100, 0.5) == (39, 60)


@pytest.mark.parametrize(("n", "q"), [(36, 0.1), (50, 0.1), (200, 0.1), (30, 0.2), (61, 0.5)])
def test_order_statistic_ranks_match_binomial(n, q):
    lo, hi = _ppf(0.025, n, q), min(_ppf(0.975, n, q) + 1, n)
    assert order_statistic_ranks(n, q) == (lo - 1, hi - 1)


def test_p10_needs_36_samples():
    # P(no sample below the true p10) = 0.9**n must drop under 2.5 %: 0.9**35 = 0.02503, 0.9**36 = 0.0225
    assert order_statistic_ranks(35, 0.1) is None
    assert order_statistic_ranks(36, 0.1) is not None


def test_ci_of_p10_on_known_samples():
    samples = np.arange(1.0, 101.0)  # sorted 1..100
    lo, hi, valid = confidence_interval(samples, "p10")
    ranks = (_ppf(0.025, 100, 0.1), min(_ppf(0.975, 100, 0.1) + 1, 100))
    assert valid and (lo, hi) == (float(ranks[0]), float(ranks[1]))


def test_bootstrap_ci_of_mean_is_deterministic_and_brackets_the_mean():
    rng = np.random.default_rng(1)
    s = rng.normal(10, 1, 200)
    a = confidence_interval(s, "mean")
    assert a == confidence_interval(s, "mean")
    assert a[0] < s.mean() < a[1] and a[2]


def test_variance_warnings_like_torch_benchmark():
    quiet = Measurement.from_samples([10.0, 10.1, 10.2, 10.3, 10.4])
    assert quiet.warnings == []
    noisy = Measurement.from_samples([5.0, 10.0, 15.0, 20.0, 30.0])  # IQR 10 / median 15
    assert any("high variance" in w and "66.7%" in w for w in noisy.warnings)


def test_to_row_has_shared_columns():
    row = Measurement.from_samples([1.0, 2.0, 3.0], threads=2, backend="torch", device="cpu").to_row()
    assert set(ROW_COLUMNS) <= set(row)
    assert row["threads"] == 2 and row["estimator"] == "p10" and row["n"] == 3


# ---- Timer with a synthetic clock ----

def test_timer_records_the_synthetic_durations():
    clock = FakeClock()
    durations = [4.0, 5.0, 6.0, 5.0]
    t = Timer(fake_model(clock, durations), clock=clock)
    m = t.measure(min_time_s=0.0, max_time_s=10.0, warmup=4, warmup_s=0.0, min_runs=8, max_runs=8,
                  check_busy=False)
    assert m.samples_ms == pytest.approx(durations * 2)
    assert m.median_ms == pytest.approx(5.0) and m.mean_ms == pytest.approx(5.0)


def test_adaptive_stop_when_ci_target_met():
    clock = FakeClock()
    durations = [10.0 + 0.001 * (i % 7) for i in range(50)]  # ±0.03 %: tiny noise
    m = Timer(fake_model(clock, durations), clock=clock).measure(
        target_ci=0.02, min_time_s=0.1, max_time_s=100.0, warmup=2, warmup_s=0.0, min_runs=10, check_busy=False)
    # p10's CI exists from 36 samples on; the first check at or after 36 samples stops
    assert 36 <= m.n <= 42
    assert m.ci_valid and m.ci_rel <= 0.02
    assert not any("not reached" in w for w in m.warnings)


def test_budget_ends_a_noisy_measurement_with_a_warning():
    clock = FakeClock()
    m = Timer(fake_model(clock, [1.0, 9.0, 3.0, 20.0]), clock=clock).measure(
        target_ci=0.001, min_time_s=0.0, max_time_s=0.5, warmup=1, warmup_s=0.0, estimator="median",
        check_busy=False)
    # the median sits between 3 and 9 ms for ever, so only the 0.5 s budget stops the loop
    assert sum(m.samples_ms) == pytest.approx(500, abs=20)
    assert any("not reached" in w for w in m.warnings)
    assert any("high variance" in w for w in m.warnings)


def test_threads_are_set_during_and_restored_after():
    seen = []
    before = torch.get_num_threads()
    target = 1 if before != 1 else 2
    Timer(lambda: seen.append(torch.get_num_threads()), threads=target).measure(
        min_time_s=0.0, max_time_s=0.05, warmup=1, min_runs=2, max_runs=3, check_busy=False)
    assert set(seen) == {target}
    assert torch.get_num_threads() == before


def test_timer_puts_a_copy_in_eval_and_leaves_the_model_alone():
    modes = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            modes.append((self.training, torch.is_inference_mode_enabled()))
            return x

    probe = Probe().train()
    Timer(probe, torch.zeros(1)).measure(max_time_s=0.05, min_time_s=0.0, warmup=1, max_runs=2,
                                         check_busy=False)
    assert set(modes) == {(False, True)}
    assert probe.training


# ---- interleaved comparison ----

def test_measure_many_interleaves_every_model_once_per_round():
    clock, log = FakeClock(), []
    models = {name: fake_model(clock, [ms], log, name) for name, ms in (("a", 1.0), ("b", 2.0), ("c", 4.0))}
    df = measure_many(models, rounds=30, progress=False, check_busy=False, warmup_rounds=0, clock=clock,
                      speed_reference=False)
    rounds = [log[i:i + 3] for i in range(0, len(log), 3)]
    assert len(rounds) == 30 and all(sorted(r) == ["a", "b", "c"] for r in rounds)
    assert len({tuple(r) for r in rounds}) > 1  # the order is shuffled
    assert list(df["model"]) == ["a", "b", "c"]
    assert list(df["estimate_ms"]) == pytest.approx([1.0, 2.0, 4.0])
    assert list(df["rel_to_fastest"]) == pytest.approx([1.0, 2.0, 4.0])
    assert set(ROW_COLUMNS) <= set(df.columns) and (df["n"] == 30).all()


def test_interleaved_adaptive_rounds_stop_at_min_rounds_when_quiet():
    clock = FakeClock()
    models = {"a": fake_model(clock, [1.0]), "b": fake_model(clock, [2.0])}
    run = run_interleaved(models, min_rounds=40, budget_s=100, progress=False, check_busy=False, clock=clock,
                          speed_reference=False)
    assert run.rounds == 40


def test_calls_per_round_shape():
    clock = FakeClock()
    run = run_interleaved({"a": fake_model(clock, [1.0])}, rounds=5, calls_per_round=3, progress=False,
                          check_busy=False, clock=clock, speed_reference=False)
    assert run.samples["a"].shape == (5, 3) and run.measurements["a"].n == 15


def test_compare_ratio_and_ci():
    clock = FakeClock()
    c = compare(fake_model(clock, [2.0, 2.2]), fake_model(clock, [1.0, 1.1]), names=("slow", "fast"),
                rounds=40, progress=False, check_busy=False, clock=clock, speed_reference=False)
    assert c.ratio == pytest.approx(2.0, rel=0.01)
    assert c.ci_low <= c.ratio <= c.ci_high and c.significant
    assert "fast is 2.00× faster" in c.summary()


def test_ratio_ci_exact_pairs():
    b = np.array([[1.0], [1.5], [1.2], [3.0]])
    ratio, lo, hi = ratio_ci(2 * b, b, "median")
    assert (ratio, lo, hi) == pytest.approx((2.0, 2.0, 2.0))


def test_inputs_dict_must_cover_models():
    with pytest.raises(LatlabError, match="no entry for model"):
        measure_many({"a": lambda x: x, "b": lambda x: x}, {"a": 1}, rounds=1, progress=False, check_busy=False)
