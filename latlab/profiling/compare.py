"""Interleaved timing of several models, and the A/B ratio with a bootstrap confidence interval.

This is how every speed comparison in latlab is made (guideline tables, latency-table builds, search).
Models are measured in rounds: each round calls every model ``calls_per_round`` times, in a freshly
shuffled order, so slow drift of the machine (frequency, co-tenants, cache state) hits all models alike
instead of whichever one happened to be measured during the slow minute. The estimate of each model is a
low percentile of its per-call samples; ratios get a bootstrap CI by resampling whole rounds (paired, so a
slow round counts against both models).

Why p10 is the default (``DEFAULT_ESTIMATOR``): on a shared or throttling CPU the slow tail of the
distribution moves between passes while its fast end repeats, so low percentiles repeat far better than
median and mean; p10 is not decided by one lucky call (as ``min`` is) and has a distribution-free
confidence interval (``min`` has none). Measurements: benchmarks/README.md#estimator-choice. Pick another
with ``estimator="median"|"p20"|"min"|"mean"``; median and spread are always reported beside the estimate.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from latlab.errors import LatlabError
from latlab.profiling.backends import Clock, Runner, get_runner
from latlab.profiling.speed import anchor_input, anchor_models, reference_key, speed_factor
from latlab.profiling.timer import (
    CONFIDENCE,
    DEFAULT_ESTIMATOR,
    QUANTILES,
    Measurement,
    busy_notes,
    check_estimator,
    ci_met,
)
from latlab.progress import ProgressReporter, as_progress

Model = nn.Module | Callable[..., Any]


@dataclass
class InterleavedRun:
    """Result of an interleaved measurement: per-model samples shaped [rounds, calls_per_round], already at
    reference speed (divided by ``speed_factor``; 1.0 when measured with ``speed_reference=False``)."""

    names: list[str]
    samples: dict[str, np.ndarray]
    measurements: dict[str, Measurement]
    estimator: str
    rounds: int
    calls_per_round: int
    elapsed_s: float
    warnings: list[str] = field(default_factory=list)
    speed_factor: float = 1.0

    def table(self) -> pd.DataFrame:
        """One row per model: ``model``, the shared measurement columns, estimator, estimate and CI,
        ``rounds``, and ``rel_to_fastest`` (estimate / the smallest estimate)."""
        rows = [{"model": name, **self.measurements[name].to_row(), "rounds": self.rounds}
                for name in self.names]
        df = pd.DataFrame(rows)
        if len(df):
            df["rel_to_fastest"] = df["estimate_ms"] / df["estimate_ms"].min()
        return df


def _inputs_for(names: list[str], inputs: Any) -> dict[str, Any]:
    if isinstance(inputs, Mapping):
        missing = [n for n in names if n not in inputs]
        if missing:
            raise LatlabError(f"inputs dict has no entry for model(s) {', '.join(missing)}")
        return {n: inputs[n] for n in names}
    return dict.fromkeys(names, inputs)


@dataclass(frozen=True)
class Prepared:
    """One model ready to be timed: the runner that prepared it and the no-argument call it returned. Models
    prepared by runners of different backends can be timed in the same rounds (``run_prepared``)."""

    runner: Runner
    fn: Callable[[], Any]


def run_interleaved(models: Mapping[str, Model], inputs: Any = None, *, rounds: int | None = None,
                    min_rounds: int = 40, calls_per_round: int = 1, budget_s: float | None = None,
                    target_ci: float = 0.02, estimator: str = DEFAULT_ESTIMATOR, backend: str = "torch",
                    device: str = "cpu", threads: int = 1, channels_last: bool = False,
                    warmup_rounds: int = 3, seed: int = 0, progress: bool | ProgressReporter = True,
                    confidence: float = CONFIDENCE, check_busy: bool = True, speed_reference: bool = True,
                    clock: Clock = time.perf_counter, runner: Runner | None = None) -> InterleavedRun:
    """Measure ``models`` interleaved and return the raw samples and a Measurement per model.

    With ``rounds`` given, run exactly that many rounds (stopping early only if ``budget_s`` is given and
    spent). Otherwise run at least ``min_rounds`` and continue until every model's CI is within
    ``target_ci`` or ``budget_s`` (default 30 s) is spent. ``check_busy`` samples other processes' CPU
    use first and warns when more than half the cores are busy; ``clock`` exists for tests.
    ``speed_reference`` adds latlab's three anchor nets to every round and reports latencies at the
    machine's reference speed (``latlab.profiling.speed``; each Measurement carries its ``speed_factor``);
    pass False for raw wall-clock numbers. ``runner`` times with an already created runner instead of
    ``get_runner(backend, device, ...)`` (the pipeline's stages share the model's runner).
    """
    check_estimator(estimator)
    names = list(models)
    if not names:
        raise LatlabError("measure_many needs at least one model")
    if runner is None:
        runner = get_runner(backend, device, threads=threads, channels_last=channels_last)
    ins = _inputs_for(names, inputs)
    prepared = {n: Prepared(runner, runner.prepare(models[n], ins[n])) for n in names}
    return run_prepared(prepared, runner, rounds=rounds, min_rounds=min_rounds, calls_per_round=calls_per_round,
                        budget_s=budget_s, target_ci=target_ci, estimator=estimator,
                        warmup_rounds=warmup_rounds, seed=seed, progress=progress, confidence=confidence,
                        check_busy=check_busy, speed_reference=speed_reference, clock=clock)


def run_prepared(prepared: Mapping[str, Prepared], reference: Runner, *, rounds: int | None = None,
                 min_rounds: int = 40, calls_per_round: int = 1, budget_s: float | None = None,
                 target_ci: float = 0.02, estimator: str = DEFAULT_ESTIMATOR, warmup_rounds: int = 3,
                 seed: int = 0, progress: bool | ProgressReporter = True, confidence: float = CONFIDENCE,
                 check_busy: bool = True, speed_reference: bool = True,
                 clock: Clock = time.perf_counter) -> InterleavedRun:
    """The interleaved rounds of ``run_interleaved`` on already prepared models, each timed by its own runner
    (so runners of several backends share one run: every runner's session is open for the whole run).
    ``reference`` times the speed anchors and gives the speed factor applied to every model's samples;
    each Measurement records its own runner's backend, precision, runtime version and compile seconds."""
    check_estimator(estimator)
    names = list(prepared)
    if not names:
        raise LatlabError("measure_many needs at least one model")
    if calls_per_round < 1:
        raise LatlabError(f"calls_per_round must be >= 1, got {calls_per_round}")
    if rounds is None and budget_s is None:
        budget_s = 30.0
    runners = {n: prepared[n].runner for n in names}
    fns = {n: prepared[n].fn for n in names}
    anchors = anchor_models() if speed_reference else {}
    for a, m in anchors.items():
        runners[a] = reference
        fns[a] = reference.prepare(m, anchor_input())
    timed = names + list(anchors)
    notes = busy_notes(reference.threads, reference.device) if check_busy else []
    rng = np.random.default_rng(seed)
    per_round: dict[str, list[list[float]]] = {n: [] for n in timed}

    bar_total = rounds if rounds is not None else budget_s
    with contextlib.ExitStack() as sessions, as_progress(progress).task(
            "timing", bar_total, description="", show=("label", "bar", "description")) as bar:
        for runner in {id(r): r for r in [reference, *runners.values()]}.values():
            sessions.enter_context(runner.session())
        for _ in range(warmup_rounds):
            for n in timed:
                runners[n].time_call(fns[n], clock)
        start = clock()
        r = 0
        while True:
            for i in rng.permutation(len(timed)):
                n = timed[i]
                if n in anchors:  # warm: an untimed call first, so the anchor's time ignores what ran before
                    runners[n].time_call(fns[n], clock)
                    per_round[n].append([runners[n].time_call(fns[n], clock)])
                    continue
                per_round[n].append([runners[n].time_call(fns[n], clock) for _ in range(calls_per_round)])
            r += 1
            elapsed = clock() - start
            done = r if rounds is not None else min(elapsed, budget_s or elapsed)
            bar.set(completed=done, description=f"round {r}, {elapsed:.1f} s")
            if rounds is not None and r >= rounds:
                break
            if budget_s is not None and elapsed >= budget_s:
                if rounds is None and r < min_rounds:
                    notes.append(f"budget {budget_s:g} s ended after {r} rounds (< {min_rounds} wanted)")
                break
            if rounds is None and r >= min_rounds and r % 5 == 0 and all(
                    ci_met(np.ravel(per_round[n]), estimator, target_ci, confidence) for n in names):
                break
        elapsed = clock() - start

    factor = 1.0
    if anchors:
        key = reference_key(reference.backend, reference.device, reference.threads, reference.channels_last)
        factor, note = speed_factor({a: np.asarray(per_round[a]) for a in anchors}, key)
        if note:
            notes.append(note)
    samples = {n: np.asarray(per_round[n], dtype=float) / factor for n in names}
    meas = {n: Measurement.from_samples(samples[n].ravel(), estimator=estimator, threads=runners[n].threads,
                                        backend=runners[n].backend, device=runners[n].device,
                                        confidence=confidence, notes=notes, speed_factor=factor,
                                        precision=runners[n].precision,
                                        runtime_version=runners[n].runtime_version(),
                                        compile_s=runners[n].compile_seconds(fns[n]))
            for n in names}
    return InterleavedRun(names, samples, meas, estimator, r, calls_per_round, elapsed, list(notes), factor)


def measure_many(models: Mapping[str, Model], inputs: Any = None, *, rounds: int | None = None,
                 calls_per_round: int = 1, budget_s: float | None = None, estimator: str = DEFAULT_ESTIMATOR,
                 backend: str = "torch", device: str = "cpu", threads: int = 1,
                 progress: bool | ProgressReporter = True, **kwargs: Any) -> pd.DataFrame:
    """Interleaved latency of several models → DataFrame, one row per model (see ``InterleavedRun.table``).

    ``inputs`` is one example input for all models or a dict name → input. Extra keyword arguments go to
    ``run_interleaved`` (``min_rounds``, ``target_ci``, ``channels_last``, ``seed``, ...).
    """
    run = run_interleaved(models, inputs, rounds=rounds, calls_per_round=calls_per_round, budget_s=budget_s,
                          estimator=estimator, backend=backend, device=device, threads=threads,
                          progress=progress, **kwargs)
    return run.table()


def _estimate_rows(boot: np.ndarray, estimator: str) -> np.ndarray:
    """The estimator applied to each row of a 2-D array of samples."""
    if estimator in QUANTILES:
        return np.quantile(boot, QUANTILES[estimator], axis=1)
    if estimator == "min":
        return boot.min(axis=1)
    return boot.mean(axis=1)


def ratio_ci(samples_a: np.ndarray, samples_b: np.ndarray, estimator: str = DEFAULT_ESTIMATOR,
             confidence: float = CONFIDENCE, n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """(ratio, low, high): est(a) / est(b) and its percentile-bootstrap CI, resampling rounds in pairs.

    ``samples_a`` and ``samples_b`` are [rounds, calls_per_round] arrays from the same interleaved run.
    """
    a, b = np.atleast_2d(samples_a), np.atleast_2d(samples_b)
    if a.shape[0] != b.shape[0]:
        raise LatlabError(f"ratio_ci needs samples from the same rounds: {a.shape[0]} vs {b.shape[0]} rounds")
    ratio = float(_estimate_rows(a.reshape(1, -1), estimator)[0] / _estimate_rows(b.reshape(1, -1), estimator)[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, a.shape[0], size=(n_boot, a.shape[0]))
    ra = _estimate_rows(a[idx].reshape(n_boot, -1), estimator)
    rb = _estimate_rows(b[idx].reshape(n_boot, -1), estimator)
    vals = ra / rb
    alpha = 1.0 - confidence
    return ratio, float(np.quantile(vals, alpha / 2)), float(np.quantile(vals, 1 - alpha / 2))


@dataclass
class Comparison:
    """A/B result: ``ratio`` = estimate(a) / estimate(b) with its bootstrap CI; < 1 means a is faster."""

    name_a: str
    name_b: str
    a: Measurement
    b: Measurement
    estimator: str
    ratio: float
    ci_low: float
    ci_high: float
    rounds: int
    confidence: float = CONFIDENCE

    @property
    def significant(self) -> bool:
        """True when the CI excludes 1 (the two models really differ at this confidence)."""
        return self.ci_high < 1.0 or self.ci_low > 1.0

    def to_row(self) -> dict[str, Any]:
        return {"model_a": self.name_a, "model_b": self.name_b, "estimator": self.estimator,
                "a_ms": self.a.estimate_ms, "b_ms": self.b.estimate_ms, "ratio": self.ratio,
                "ci_low": self.ci_low, "ci_high": self.ci_high, "rounds": self.rounds,
                "threads": self.a.threads, "backend": self.a.backend, "device": self.a.device,
                "speed_factor": self.a.speed_factor}

    def summary(self) -> str:
        faster, factor = (self.name_a, 1 / self.ratio) if self.ratio < 1 else (self.name_b, self.ratio)
        verdict = f"{faster} is {factor:.2f}× faster" if self.significant else "no significant difference"
        return (f"{self.name_a}/{self.name_b} = {self.ratio:.3f} [{self.ci_low:.3f}, {self.ci_high:.3f}] "
                f"({self.estimator}, {self.confidence:.0%} CI over {self.rounds} rounds): {verdict}")


def compare(model_a: Model, model_b: Model, inputs: Any = None, *, names: tuple[str, str] = ("a", "b"),
            rounds: int | None = None, calls_per_round: int = 1, budget_s: float | None = None,
            estimator: str = DEFAULT_ESTIMATOR, backend: str = "torch", device: str = "cpu", threads: int = 1,
            n_boot: int = 2000, progress: bool | ProgressReporter = True, **kwargs: Any) -> Comparison:
    """Interleaved A/B comparison: the ratio of estimates a/b with a bootstrap CI over rounds.

    ``inputs`` is one input for both models or a dict keyed by ``names``.
    """
    if names[0] == names[1]:
        raise LatlabError(f"compare needs two different names, got {names}")
    run = run_interleaved({names[0]: model_a, names[1]: model_b}, inputs, rounds=rounds,
                          calls_per_round=calls_per_round, budget_s=budget_s, estimator=estimator,
                          backend=backend, device=device, threads=threads, progress=progress, **kwargs)
    confidence = kwargs.get("confidence", CONFIDENCE)
    ratio, lo, hi = ratio_ci(run.samples[names[0]], run.samples[names[1]], estimator, confidence, n_boot)
    return Comparison(names[0], names[1], run.measurements[names[0]], run.measurements[names[1]], estimator,
                      ratio, lo, hi, run.rounds, confidence)
