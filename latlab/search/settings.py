"""What one ``latlab search run`` needs, as a library object: :class:`SearchSettings` and its checks."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from latlab.errors import SearchError, UnknownModelError
from latlab.ops.zoo import SEED_DETECTORS, resolve_config
from latlab.runs import RESULTS_ROOT
from latlab.search.estimators import (
    AccuracyEstimator,
    EstimatorContext,
    EstimatorSpec,
    get_estimator_class,
    make_estimator,
    parse_estimator,
)
from latlab.search.objective_registry import resolve
from latlab.search.objectives import parse_latency_source
from latlab.search.samplers import AUTO_SAMPLER, PRUNERS, SAMPLERS
from latlab.search.storage import mask_url

DEFAULT_BASELINES = SEED_DETECTORS
MODES = ("constrained", "pareto")
_UNITS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}


def parse_latency_budget(text: str | float | None) -> float | None:
    """``"12ms"``, ``"0.012s"``, ``"800us"`` → milliseconds; a bare number or a non-positive budget is an error."""
    if text is None:
        return None
    s = str(text).strip().lower().replace(" ", "")
    m = re.fullmatch(r"([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)(ms|s|us|µs)?", s)
    if not m:
        raise SearchError(f"latency budget {text!r}: expected a number with a unit, e.g. '12ms', '0.012s'")
    if m.group(2) is None:
        raise SearchError(f"latency budget {text!r} has no unit: write '{m.group(1)}ms' (or s, us)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not value > 0 or not math.isfinite(value):
        raise SearchError(f"latency budget {text!r} must be a positive time")
    return value


@dataclass
class SearchSettings:
    """Everything one ``latlab search run`` needs (the CLI's options, as a library object).

    ``accuracy`` names the accuracy estimator (:mod:`latlab.search.estimators`, ``NAME`` or ``NAME:ARG``);
    ``objectives=None`` means ``("latency_ms", <the estimator's objective>)``: ``map`` for ``train``."""

    mode: str = "constrained"
    latency_budget_ms: float | None = None
    n_trials: int | None = None
    hours: float | None = None
    space: str | Path | dict | None = None
    storage: str | None = None
    study: str | None = None
    imgsz: int = 160
    epochs: int | None = None
    minutes: float | None = None
    device: str = "cpu"
    latency: str = "measured"
    sampler: str = "auto"
    seed: int = 0
    resume: bool = False
    threads: int = 1
    data: str = "builtin"
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    batch: int = 16
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    pruner: str = "median"
    population_size: int = 10
    results_root: Path | str = RESULTS_ROOT
    keep_weights: bool = False
    latency_max_time_s: float = 5.0
    estimator: str = "p10"
    val_max_images: int | None = None
    objectives: tuple[str, ...] | None = None
    backend: str = "torch"
    accuracy: str = "train"

    def check(self) -> None:
        """Raise ``SearchError`` for inconsistent settings before anything is opened or run."""
        if self.mode not in MODES:
            raise SearchError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"--sampler {self.sampler!r}: expected one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise SearchError(f"pruner {self.pruner!r}: expected one of {', '.join(PRUNERS)}")
        if self.mode == "constrained" and self.latency_budget_ms is None:
            raise SearchError("--mode constrained needs --latency-budget (e.g. 12ms)")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise SearchError(f"latency budget must be positive, got {self.latency_budget_ms} ms")
        if self.n_trials is not None and self.n_trials < 1:
            raise SearchError(f"--trials must be >= 1, got {self.n_trials}")
        if self.hours is not None and not self.hours > 0:
            raise SearchError(f"--hours must be > 0, got {self.hours}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise SearchError(f"--imgsz {self.imgsz} must be a positive multiple of 32 (P5 has stride 32)")
        if self.threads < 1:
            raise SearchError(f"threads must be >= 1, got {self.threads}")
        if self.batch < 1:
            raise SearchError(f"--batch must be >= 1, got {self.batch}")
        if self.epochs is not None and self.minutes is not None:
            raise SearchError("give --epochs or --minutes (the per-trial training budget), not both")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise SearchError(f"--device {self.device!r}: expected cpu or cuda")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise SearchError(f"--device {self.device}: no CUDA device is available on this host")
        for name in self.baselines:  # a bad name fails here, not as a failed trial inside the study
            try:
                resolve_config(name)
            except UnknownModelError as exc:
                raise SearchError(f"--baselines {name!r}: {exc}") from None
        parse_latency_source(self.latency)
        self.make_accuracy()  # an unknown estimator fails here, before any study is opened
        resolve(self.study_objectives)
        if self.mode == "constrained" and self.objectives is not None and (
                tuple(self.objectives) != self.default_objectives()):
            raise SearchError("--objective adds objectives to a pareto study; --mode constrained maximises "
                              "the accuracy estimate under the latency budget")
        if self.mode == "pareto" and len(self.study_objectives) < 2:
            raise SearchError(f"--mode pareto needs at least two objectives, got {list(self.study_objectives)}")

    def estimator_context(self, nc: int | None = None) -> EstimatorContext:
        """What the accuracy estimator gets: data, image size, budget, seed (``nc``: the head's classes)."""
        return EstimatorContext(data=self.data, data_kwargs=dict(self.data_kwargs), imgsz=self.imgsz, nc=nc,
                                seed=self.seed, epochs=self.epochs, minutes=self.minutes, batch=self.batch,
                                val_max_images=self.val_max_images, keep_weights=self.keep_weights)

    def make_accuracy(self, nc: int | None = None) -> AccuracyEstimator:
        """The accuracy estimator ``accuracy`` names (an unknown name is a one-line ``SearchError``)."""
        return make_estimator(self.accuracy, self.estimator_context(nc))

    @property
    def accuracy_spec(self) -> EstimatorSpec:
        """The registry's spec of the accuracy estimator (an unknown name is a ``SearchError``)."""
        return get_estimator_class(parse_estimator(self.accuracy)[0]).spec

    def default_objectives(self) -> tuple[str, ...]:
        """``("latency_ms", <objective of the accuracy estimator>)``: today's pair for ``train``."""
        return ("latency_ms", self.accuracy_spec.objective)

    @property
    def study_objectives(self) -> tuple[str, ...]:
        """The objectives the study's front is drawn over: ``objectives``, else :meth:`default_objectives`."""
        return tuple(self.objectives) if self.objectives is not None else self.default_objectives()

    @property
    def objective_names(self) -> tuple[str, ...]:
        """What the study's trials return: the objectives in pareto mode, the estimator's objective (``map``
        for ``train``) alone in constrained mode."""
        return self.study_objectives if self.mode == "pareto" else (self.accuracy_spec.objective,)

    @property
    def sampler_name(self) -> str:
        """The sampler that runs (``auto`` resolved by mode)."""
        return AUTO_SAMPLER.get(self.mode, "tpe") if self.sampler == "auto" else self.sampler

    @property
    def study_name(self) -> str:
        """``--study``, else ``<mode>-<sampler>``."""
        return self.study or f"{self.mode}-{self.sampler_name}"


def settings_dict(s: SearchSettings) -> dict[str, Any]:
    """JSON-able settings (for meta.json)."""
    d = asdict(s)
    d["results_root"] = str(d["results_root"])
    d["space"] = str(d["space"]) if not isinstance(d["space"], dict) else "<dict>"
    d["storage"] = mask_url(s.storage) if s.storage and "://" in s.storage else s.storage
    return d
