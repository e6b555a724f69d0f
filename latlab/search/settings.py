"""What one ``latlab search run`` needs, as a library object: :class:`SearchSettings` and its checks."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from latlab.detection.device import parse_device, parse_devices
from latlab.errors import DeviceError, SearchError, UnknownModelError
from latlab.ops.zoo import SEED_DETECTORS, resolve_config
from latlab.profiling.backends import get_backend
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
from latlab.validate import positive_float

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
    ``objectives=None`` means ``("latency_ms", <the estimator's objective>)``: ``map`` for ``train``.
    ``budget_from`` names a baseline whose latency, measured once by the search itself, is the budget: that
    baseline is judged by the same measurement, so it is feasible by construction; ``budget_scale`` (e.g. 0.8)
    makes the budget that fraction of it ("find a model at least 20 % faster than the seed"), and then the
    baseline is judged infeasible by that same measurement.

    ``device``/``backend`` are where latency is measured; ``accuracy_backend`` what a trained candidate's mAP
    is scored through (eager ``torch`` FP32, or e.g. ``onnxruntime-int8``: the FP32 mAP is kept beside it);
    ``train_device`` (one device or a comma list,
    ``cuda:0,1,2,3``) and ``amp`` where and how candidates train. ``workers`` local worker processes share
    the study (None: one per listed train device); worker ``worker`` trains on device ``worker mod len``."""

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
    accuracy_backend: str = "torch"
    accuracy: str = "train"
    budget_from: str | None = None
    budget_scale: float = 1.0
    train_device: str = "cpu"
    amp: str = "auto"
    workers: int | None = None
    worker: int = 0

    def check(self) -> None:
        """Raise ``SearchError`` for inconsistent settings before anything is opened or run."""
        if self.mode not in MODES:
            raise SearchError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"--sampler {self.sampler!r}: expected one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise SearchError(f"pruner {self.pruner!r}: expected one of {', '.join(PRUNERS)}")
        if self.budget_from is not None and self.latency_budget_ms is not None:
            raise SearchError("give --latency-budget or --budget-from, not both")
        if self.budget_from is not None and self.budget_from not in self.baselines:
            raise SearchError(f"--budget-from {self.budget_from!r} must be one of the baselines "
                              f"({', '.join(self.baselines) or 'none given'})")
        positive_float(self.budget_scale, "--budget-scale", error=SearchError)
        if self.budget_scale != 1.0 and self.budget_from is None:
            raise SearchError("--budget-scale scales the --budget-from baseline's latency; give --budget-from too")
        if self.mode == "constrained" and self.latency_budget_ms is None and self.budget_from is None:
            raise SearchError("--mode constrained needs --latency-budget (e.g. 12ms) or --budget-from BASELINE")
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
        if self.workers is not None and self.workers < 1:
            raise SearchError(f"--workers {self.workers}: expected at least 1 worker process")
        if parse_device(self.device, "off", option="--device").kind.name not in ("cpu", "cuda"):
            raise DeviceError(f"--device {self.device}: latency is measured on cpu or cuda")
        parse_devices(self.train_device, self.amp, option="--train-device")
        for name in self.baselines:  # a bad name fails here, not as a failed trial inside the study
            try:
                resolve_config(name)
            except UnknownModelError as exc:
                raise SearchError(f"--baselines {name!r}: {exc}") from None
        parse_latency_source(self.latency)
        self.make_accuracy()  # an unknown estimator fails here, before any study is opened
        self.check_accuracy_backend()
        resolve(self.study_objectives)
        if self.mode == "constrained" and self.objectives is not None and (
                tuple(self.objectives) != self.default_objectives()):
            raise SearchError("--objective adds objectives to a pareto study; --mode constrained maximises "
                              "the accuracy estimate under the latency budget")
        if self.mode == "pareto" and len(self.study_objectives) < 2:
            raise SearchError(f"--mode pareto needs at least two objectives, got {list(self.study_objectives)}")

    def check_accuracy_backend(self) -> None:
        """An unknown or uninstalled ``--accuracy-backend``, or one given to an estimator that trains nothing,
        is a one-line error before any study is opened."""
        if self.accuracy_backend == "torch":
            return
        get_backend(self.accuracy_backend).check_installed()
        if self.accuracy_spec.kind not in ("training", "composite"):
            raise SearchError(f"--accuracy-backend {self.accuracy_backend} scores trained weights; --accuracy "
                              f"{self.accuracy} trains nothing (use train or twostage)")

    def estimator_context(self, nc: int | None = None) -> EstimatorContext:
        """What the accuracy estimator gets: data, image size, budget, seed (``nc``: the head's classes)."""
        return EstimatorContext(data=self.data, data_kwargs=dict(self.data_kwargs), imgsz=self.imgsz, nc=nc,
                                seed=self.seed, epochs=self.epochs, minutes=self.minutes, batch=self.batch,
                                val_max_images=self.val_max_images, keep_weights=self.keep_weights,
                                threads=self.train_threads, device=self.worker_device, amp=self.amp,
                                accuracy_backend=self.accuracy_backend)

    @property
    def train_devices(self) -> list[str]:
        """The train devices, canonical (``cuda`` → ``cuda:0``), in the order workers take them."""
        return [d.name for d in parse_devices(self.train_device, self.amp, option="--train-device")]

    @property
    def n_workers(self) -> int:
        """Local worker processes: ``workers``, else one per listed train device."""
        return self.workers if self.workers is not None else len(self.train_devices)

    @property
    def worker_device(self) -> str:
        """The device this worker (``worker``) trains on: round-robin over :attr:`train_devices`."""
        devices = self.train_devices
        return devices[self.worker % len(devices)]

    @property
    def train_threads(self) -> int | None:
        """Training threads: ``threads`` for each of several CPU workers, else torch's choice."""
        return self.threads if self.n_workers > 1 and self.worker_device == "cpu" else None

    def for_worker(self, index: int) -> SearchSettings:
        """These settings for local worker ``index`` (its train device: :attr:`worker_device`)."""
        return replace(self, worker=index)

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
