"""Latency of models under several backends, as ratios to eager torch measured interleaved in one run.

Every (model, backend) pair is converted first by its backend's runner (export, quantization, compile; the
seconds are recorded apart as ``compile_s``), then all pairs are timed in the same shuffled rounds
(``compare.run_prepared``), so drift of the machine hits every backend alike. Per model and round, each
backend's time is divided by eager torch's time in that round; the table reports the median of these
per-round ratios with a percentile-bootstrap CI over rounds (``timer.bootstrap_ci``), the ratio of the two
estimates with its paired round bootstrap (``compare.ratio_ci``), and each backend's own latency (estimator,
median, IQR). A pair whose conversion fails is left out with its one-line reason, not the whole run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from latlab.errors import DeviceError, LatlabError
from latlab.profiling.backends import Runner, get_runner, list_backends
from latlab.profiling.compare import InterleavedRun, Prepared, ratio_ci, run_prepared
from latlab.profiling.timer import CONFIDENCE, DEFAULT_ESTIMATOR, bootstrap_ci
from latlab.progress import ProgressReporter

REFERENCE_BACKEND = "torch"


def pair_key(model: str, backend: str) -> str:
    """The name a (model, backend) pair is timed under."""
    return f"{model} @ {backend}"


def installed_backends(device: str = "cpu") -> list[str]:
    """The registered backends that run on ``device`` and whose packages import here."""
    names = []
    for spec in list_backends():
        if device not in spec.devices:
            continue
        try:
            spec.check_installed()
        except DeviceError:
            continue
        names.append(spec.name)
    return names


def per_round_ratios(samples: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """One ratio per round: the median of a pair's calls in that round over the reference's."""
    a, b = np.atleast_2d(samples), np.atleast_2d(reference)
    if a.shape[0] != b.shape[0]:
        raise LatlabError(f"per-round ratios need the same rounds: {a.shape[0]} vs {b.shape[0]}")
    return np.median(a, axis=1) / np.median(b, axis=1)


@dataclass
class RuntimeComparison:
    """An interleaved run over (model, backend) pairs; ``skipped`` maps a pair that did not convert to why."""

    run: InterleavedRun
    pairs: dict[str, tuple[str, str]]
    skipped: dict[tuple[str, str], str] = field(default_factory=dict)
    confidence: float = CONFIDENCE

    def table(self) -> pd.DataFrame:
        """One row per converted pair: model, backend, precision, runtime version, compile seconds, latency
        (estimator, estimate and CI, median, IQR), the median per-round ratio to eager torch with its bootstrap
        CI (``ratio_median``, ``ratio_ci_low``/``high``) and the ratio of estimates with its CI
        (``ratio_estimate``, ``ratio_estimate_ci_low``/``high``)."""
        rows = []
        for key, (model, backend) in self.pairs.items():
            m = self.run.measurements[key]
            ref = self.run.samples[pair_key(model, REFERENCE_BACKEND)]
            ratios = per_round_ratios(self.run.samples[key], ref)
            low, high = bootstrap_ci(ratios, "median", self.confidence)
            est, est_low, est_high = ratio_ci(self.run.samples[key], ref, self.run.estimator, self.confidence)
            rows.append({"model": model, "backend": backend, "precision": m.precision,
                         "runtime_version": m.runtime_version, "compile_s": m.compile_s,
                         "estimator": m.estimator, "estimate_ms": m.estimate_ms, "ci_low_ms": m.ci_low_ms,
                         "ci_high_ms": m.ci_high_ms, "median_ms": m.median_ms, "iqr_ms": m.iqr_ms, "n": m.n,
                         "ratio_median": float(np.median(ratios)), "ratio_ci_low": low, "ratio_ci_high": high,
                         "ratio_estimate": est, "ratio_estimate_ci_low": est_low,
                         "ratio_estimate_ci_high": est_high, "rounds": self.run.rounds,
                         "threads": m.threads, "speed_factor": m.speed_factor})
        return pd.DataFrame(rows)

    def rounds_table(self) -> pd.DataFrame:
        """The raw samples, one row per (pair, round, call), in ms at reference speed."""
        rows = [{"model": model, "backend": backend, "round": r, "call": c, "ms": float(v)}
                for key, (model, backend) in self.pairs.items()
                for r, calls in enumerate(self.run.samples[key]) for c, v in enumerate(calls)]
        return pd.DataFrame(rows)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def compare_runtimes(models: Mapping[str, nn.Module], backends: Sequence[str], example_input: Any, *,
                     threads: int = 1, rounds: int | None = None, budget_s: float | None = None,
                     estimator: str = DEFAULT_ESTIMATOR, progress: bool | ProgressReporter = True,
                     **kwargs: Any) -> RuntimeComparison:
    """Convert every model under every backend (eager torch always included as the reference), then time all
    pairs interleaved in one run. Extra keyword arguments go to ``run_prepared`` (``min_rounds``,
    ``confidence``, ``seed``, ``speed_reference``, ...). A backend that is unknown, not installed or not on
    the CPU is a one-line DeviceError before anything is converted."""
    if not models:
        raise LatlabError("compare_runtimes needs at least one model")
    names = list(dict.fromkeys([REFERENCE_BACKEND, *backends]))
    runners: dict[str, Runner] = {b: get_runner(b, "cpu", threads=threads) for b in names}
    prepared: dict[str, Prepared] = {}
    pairs: dict[str, tuple[str, str]] = {}
    skipped: dict[tuple[str, str], str] = {}
    for model_name, model in models.items():
        for backend in names:
            runner = runners[backend]
            try:
                fn = runner.prepare(model, example_input)
            except Exception as exc:  # a conversion that fails drops this pair only; the reason is kept
                if backend == REFERENCE_BACKEND:
                    raise
                skipped[(model_name, backend)] = _one_line(exc)
                continue
            key = pair_key(model_name, backend)
            prepared[key] = Prepared(runner, fn)
            pairs[key] = (model_name, backend)
    run = run_prepared(prepared, runners[REFERENCE_BACKEND], rounds=rounds, budget_s=budget_s,
                       estimator=estimator, progress=progress, **kwargs)
    return RuntimeComparison(run, pairs, skipped, kwargs.get("confidence", CONFIDENCE))
