"""Timing one model: ``Timer`` → ``Measurement`` with an estimator, its confidence interval and the spread.

``Timer.measure`` warms up, then repeats single calls until the confidence interval of the chosen
estimator is within ``target_ci`` (relative half-width, default ±2 %) of the estimate, or the time budget
ends. Every sample is one call timed alone (``Runner.time_call``), so the samples are a latency
distribution, not an average of a loop.

Estimators (``ESTIMATORS``): ``median``, ``p10``, ``p20``, ``min``, ``mean``. Quantile estimators get a
distribution-free order-statistic confidence interval (binomial ranks); ``min`` and ``mean`` get a
percentile bootstrap with a fixed seed. The default is ``p10``: on a shared or throttling CPU the slow
tail moves between runs while the fast end of the distribution repeats (why: ``latlab.profiling.compare``;
measurements: benchmarks/README.md#estimator-choice). Every output names the estimator; median and spread
stay beside it.

A single back-to-back loop is still exposed to slow drift of the machine; to compare models, measure them
interleaved with ``latlab.profiling.compare.measure_many`` / ``compare``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats as sstats
from torch import nn

from latlab.errors import LatlabError
from latlab.fingerprint import device_fingerprint, warn_if_busy
from latlab.profiling.backends import Clock, Runner, get_runner

DEFAULT_ESTIMATOR = "p10"
CONFIDENCE = 0.95
# torch.utils.benchmark's thresholds on IQR / median (common.py: _IQR_WARN_THRESHOLD, _IQR_GROSS_WARN_THRESHOLD)
IQR_WARN = 0.10
IQR_GROSS_WARN = 0.25
BUSY_SAMPLE_S = 0.2

QUANTILES = {"median": 0.5, "p10": 0.1, "p20": 0.2}
ESTIMATORS: dict[str, Callable[[np.ndarray], float]] = {
    "median": lambda a: float(np.quantile(a, 0.5)),
    "p10": lambda a: float(np.quantile(a, 0.1)),
    "p20": lambda a: float(np.quantile(a, 0.2)),
    "min": lambda a: float(np.min(a)),
    "mean": lambda a: float(np.mean(a)),
}

# Measurement columns shared by every latlab table (``Measurement.to_row``).
ROW_COLUMNS = ("median_ms", "mean_ms", "p10_ms", "p90_ms", "iqr_ms", "cv", "n", "threads", "backend", "device")
EXTRA_COLUMNS = ("min_ms", "estimator", "estimate_ms", "ci_low_ms", "ci_high_ms", "speed_factor", "precision",
                 "runtime_version", "compile_s")


def check_estimator(name: str) -> str:
    if name not in ESTIMATORS:
        raise LatlabError(f"unknown estimator '{name}': expected one of {', '.join(ESTIMATORS)}")
    return name


def estimate(samples: Sequence[float] | np.ndarray, estimator: str = DEFAULT_ESTIMATOR) -> float:
    """The value of ``estimator`` on ``samples`` (quantiles use numpy's linear interpolation)."""
    a = np.asarray(samples, dtype=float)
    if a.size == 0:
        raise LatlabError("no timing samples to estimate from")
    return ESTIMATORS[check_estimator(estimator)](a)


def order_statistic_ranks(n: int, q: float, confidence: float = CONFIDENCE) -> tuple[int, int] | None:
    """0-based ranks (lo, hi) of the sorted samples bounding a distribution-free CI for the q-quantile.

    The number of samples below the true quantile is Binomial(n, q); the interval [x_(l), x_(u)] (1-based)
    with l = ppf(α/2) and u = ppf(1-α/2) + 1 covers it with probability ≈ ``confidence``. Returns None when
    n is too small for a lower bound to exist (n < 36 for p10 at 95 %, n < 6 for the median).
    """
    alpha = 1.0 - confidence
    lo = int(sstats.binom.ppf(alpha / 2, n, q))
    hi = int(sstats.binom.ppf(1 - alpha / 2, n, q)) + 1
    if lo < 1:
        return None
    return lo - 1, min(hi, n) - 1


def order_statistic_ranks_upper(n: int, q: float, confidence: float = CONFIDENCE) -> int:
    """0-based rank of the upper CI bound alone (used while the lower bound does not exist yet)."""
    return min(int(sstats.binom.ppf(1 - (1.0 - confidence) / 2, n, q)) + 1, n) - 1


def bootstrap_ci(samples: Sequence[float] | np.ndarray, estimator: str, confidence: float = CONFIDENCE,
                 n_boot: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``estimator`` (fixed seed, so the same samples give the same CI)."""
    a = np.asarray(samples, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.size, size=(n_boot, a.size))
    boot = a[idx]
    if estimator in QUANTILES:
        vals = np.quantile(boot, QUANTILES[estimator], axis=1)
    elif estimator == "min":
        vals = boot.min(axis=1)
    else:
        vals = boot.mean(axis=1)
    alpha = 1.0 - confidence
    return float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


def confidence_interval(samples: Sequence[float] | np.ndarray, estimator: str = DEFAULT_ESTIMATOR,
                        confidence: float = CONFIDENCE) -> tuple[float, float, bool]:
    """(low, high, valid) CI of ``estimator``: order statistics for quantiles, bootstrap for min and mean.

    ``valid`` is False when there are too few samples for a distribution-free lower bound; the interval
    then runs from the smallest sample and must not be used to stop sampling.
    """
    a = np.sort(np.asarray(samples, dtype=float))
    check_estimator(estimator)
    if a.size < 2:
        v = float(a[0]) if a.size else float("nan")
        return v, v, False
    if estimator in QUANTILES:
        ranks = order_statistic_ranks(a.size, QUANTILES[estimator], confidence)
        if ranks is None:
            hi = order_statistic_ranks_upper(a.size, QUANTILES[estimator], confidence)
            return float(a[0]), float(a[hi]), False
        return float(a[ranks[0]]), float(a[ranks[1]]), True
    lo, hi = bootstrap_ci(a, estimator, confidence)
    return lo, hi, a.size >= 10


@dataclass
class Measurement:
    """Latency samples of one model and their statistics, all in milliseconds.

    ``estimate_ms`` is the value of ``estimator`` (the number to compare and tabulate); ``ci_low_ms`` /
    ``ci_high_ms`` its confidence interval (95 %); the rest describes the spread. ``speed_factor`` is the
    machine's speed relative to its stored reference when the samples were taken (``latlab.profiling.speed``);
    the samples are already divided by it, so raw wall-clock values are ``samples_ms × speed_factor``.
    """

    samples_ms: list[float]
    median_ms: float
    mean_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    cv: float
    n: int
    threads: int
    backend: str
    device: str
    estimator: str
    estimate_ms: float
    ci_low_ms: float
    ci_high_ms: float
    min_ms: float = float("nan")
    ci_valid: bool = True
    warnings: list[str] = field(default_factory=list)
    speed_factor: float = 1.0
    precision: str = "fp32"
    runtime_version: str = ""
    compile_s: float = float("nan")

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], *, estimator: str = DEFAULT_ESTIMATOR, threads: int = 1,
                     backend: str = "torch", device: str = "cpu", confidence: float = CONFIDENCE,
                     notes: Sequence[str] = (), speed_factor: float = 1.0, precision: str = "fp32",
                     runtime_version: str = "", compile_s: float = float("nan")) -> Measurement:
        """Compute every statistic of ``samples_ms`` and the high-variance warnings. ``precision``,
        ``runtime_version`` and ``compile_s`` (seconds a compile/quantization took, never in the samples) come
        from the runner (``Runner.precision``/``runtime_version()``/``compile_seconds``)."""
        a = np.asarray(samples_ms, dtype=float)
        if a.size == 0:
            raise LatlabError("no timing samples: the measurement took none (budget too small?)")
        check_estimator(estimator)
        q25, median, q75 = (float(v) for v in np.quantile(a, [0.25, 0.5, 0.75]))
        mean = float(a.mean())
        cv = float(a.std(ddof=1) / mean) if a.size > 1 and mean > 0 else 0.0
        lo, hi, valid = confidence_interval(a, estimator, confidence)
        m = cls(
            samples_ms=[float(v) for v in a],
            median_ms=median,
            mean_ms=mean,
            p10_ms=float(np.quantile(a, 0.1)),
            p90_ms=float(np.quantile(a, 0.9)),
            iqr_ms=q75 - q25,
            cv=cv,
            n=int(a.size),
            threads=int(threads),
            backend=backend,
            device=device,
            estimator=estimator,
            estimate_ms=estimate(a, estimator),
            ci_low_ms=lo,
            ci_high_ms=hi,
            min_ms=float(a.min()),
            ci_valid=valid,
            warnings=list(notes),
            speed_factor=float(speed_factor),
            precision=precision,
            runtime_version=runtime_version,
            compile_s=float(compile_s),
        )
        m.warnings.extend(variance_warnings(m.iqr_ms, m.median_ms))
        return m

    @property
    def ci_rel(self) -> float:
        """Relative half-width of the CI: max distance of a bound from the estimate / the estimate."""
        if self.estimate_ms <= 0:
            return float("inf")
        return max(self.estimate_ms - self.ci_low_ms, self.ci_high_ms - self.estimate_ms) / self.estimate_ms

    def to_row(self) -> dict[str, Any]:
        """One table row with latlab's shared measurement columns plus estimator, estimate and CI."""
        d = asdict(self)
        row = {k: d[k] for k in ROW_COLUMNS}
        row.update({k: d[k] for k in EXTRA_COLUMNS})
        return row

    def summary(self) -> str:
        speed = f", at reference speed (machine ran {self.speed_factor:.3f}×)" if self.speed_factor != 1.0 else ""
        return (f"{self.estimator} {self.estimate_ms:.3f} ms [{self.ci_low_ms:.3f}, {self.ci_high_ms:.3f}] "
                f"(median {self.median_ms:.3f}, IQR {self.iqr_ms:.3f}, n={self.n}, {self.backend}/"
                f"{self.device}, {self.threads} thread{'s' if self.threads != 1 else ''}{speed})")


def variance_warnings(iqr_ms: float, median_ms: float) -> list[str]:
    """torch.utils.benchmark-style warnings when IQR / median exceeds 10 % (25 % = gross)."""
    if median_ms <= 0:
        return []
    rel = iqr_ms / median_ms
    if rel >= IQR_GROSS_WARN:
        return [f"measurement has high variance: IQR is {rel:.1%} of the median, "
                "which suggests significant environmental influence"]
    if rel >= IQR_WARN:
        return [f"measurement has high variance: IQR is {rel:.1%} of the median, "
                "which could indicate system fluctuation"]
    return []


def busy_notes(threads: int, device: str, sample_s: float = BUSY_SAMPLE_S) -> list[str]:
    """Run ``fingerprint.warn_if_busy`` (which warns) and return its message for the Measurement too.

    The CPU use of other processes is sampled for ``sample_s`` while we are idle (the load average would
    count our own previous measurements as "busy").
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warn_if_busy(device_fingerprint(threads, device), sample_s=sample_s)
    notes = [str(w.message) for w in caught]
    for note in notes:
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    return notes


class Timer:
    """Times one model (or a plain callable) on one backend/device/thread count.

    ``model_or_callable`` is an ``nn.Module`` (run on a private eval-mode copy) or any callable; it is
    called with ``example_input`` (a tuple is spread as args, ``None`` means no args). ``clock`` returns
    seconds and exists so tests can drive the timer with synthetic durations.
    """

    def __init__(self, model_or_callable: nn.Module | Callable[..., Any], example_input: Any = None, *,
                 backend: str = "torch", device: str = "cpu", threads: int = 1, channels_last: bool = False,
                 clock: Clock = time.perf_counter, runner: Runner | None = None):
        self.runner = runner or get_runner(backend, device, threads=threads, channels_last=channels_last)
        self.fn = self.runner.prepare(model_or_callable, example_input)
        self.clock = clock

    @property
    def threads(self) -> int:
        return self.runner.threads

    def measure(self, target_ci: float = 0.02, *, min_time_s: float = 0.5, max_time_s: float = 10.0,
                warmup: int = 5, warmup_s: float = 0.1, min_runs: int = 10, max_runs: int | None = None,
                estimator: str = DEFAULT_ESTIMATOR, confidence: float = CONFIDENCE,
                check_busy: bool = True) -> Measurement:
        """Warm up, then sample until the estimator's CI half-width ≤ ``target_ci`` × estimate or
        ``max_time_s`` has passed (at least ``min_time_s`` and ``min_runs`` calls)."""
        check_estimator(estimator)
        notes = busy_notes(self.threads, self.runner.device) if check_busy else []
        samples: list[float] = []
        clock, runner, fn = self.clock, self.runner, self.fn
        with runner.session():
            t0 = clock()
            done = 0
            while done < warmup or clock() - t0 < warmup_s:
                runner.time_call(fn, clock)
                done += 1
                if clock() - t0 > max_time_s:
                    break
            start = clock()
            next_check = min_runs
            met = False
            while True:
                samples.append(runner.time_call(fn, clock))
                n = len(samples)
                elapsed = clock() - start
                if max_runs is not None and n >= max_runs:
                    break
                if elapsed >= max_time_s:
                    break
                if n >= next_check and elapsed >= min_time_s:
                    next_check = max(n + 5, int(n * 1.1))
                    if ci_met(samples, estimator, target_ci, confidence):
                        met = True
                        break
        if not met and not ci_met(samples, estimator, target_ci, confidence):
            notes.append(f"confidence target ±{target_ci:.1%} not reached after {len(samples)} calls "
                         f"in {clock() - start:.2f} s")
        return Measurement.from_samples(samples, estimator=estimator, threads=self.threads,
                                        backend=runner.backend, device=runner.device,
                                        confidence=confidence, notes=notes, precision=runner.precision,
                                        runtime_version=runner.runtime_version(),
                                        compile_s=runner.compile_seconds(fn))


def ci_met(samples: Sequence[float], estimator: str, target_ci: float,
           confidence: float = CONFIDENCE) -> bool:
    """True when the CI of ``estimator`` is valid and its relative half-width is within ``target_ci``."""
    lo, hi, valid = confidence_interval(samples, estimator, confidence)
    est = estimate(samples, estimator)
    return valid and est > 0 and max(est - lo, hi - est) / est <= target_ci
