"""Accuracy estimators: one interface, one registry, like blocks and backends.

An estimator tells how good a candidate detector will be, at some cost: a short training (``train``), a
zero-cost proxy computed from an untrained network in a few forward/backward passes (``synflow``,
``naswot``, ``zico``, ``maedet``, and the naive baselines ``params``, ``madds``), weights inherited from a
trained supernet (``supernet:FILE``) or a combination (``twostage``). Each class carries an
:class:`EstimatorSpec` (name, kind, what its score is) and registers itself with :func:`register_estimator`;
the search (``latlab search run --accuracy NAME``) and the fidelity benchmark (``latlab fidelity``) look
estimators up by name and nowhere else, so an unknown name is a one-line error.

A score is "higher is better". Estimators whose score is an mAP estimate (``objective="map"``) fill
``Estimate.map``; proxies report a unit-less score (``objective="accuracy_score"``). How far each score can
be trusted is not assumed here: the fidelity benchmark measures it (Kendall τ against reference trainings).
"""

from __future__ import annotations

import difflib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from latlab.errors import SearchError
from latlab.search.objectives import EpochHook

KINDS = ("training", "zero-cost", "weight-sharing", "baseline", "composite")
SCORE_OBJECTIVES = ("map", "accuracy_score")



@dataclass(frozen=True)
class EstimatorSpec:
    """What the registry knows about one estimator.

    ``objective`` names the search objective its score feeds: ``"map"`` when the score estimates mAP50-95,
    ``"accuracy_score"`` for a unit-less proxy. ``arg`` describes the text after ``name:`` (``None``: the
    estimator takes no argument; ``supernet:FILE`` takes a file)."""

    name: str
    kind: str
    description: str
    objective: str = "accuracy_score"
    arg: str | None = None
    arg_required: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"estimator {self.name!r}: kind must be one of {KINDS}, got {self.kind!r}")
        if self.objective not in SCORE_OBJECTIVES:
            raise ValueError(f"estimator {self.name!r}: objective must be one of {SCORE_OBJECTIVES}")


@dataclass(frozen=True)
class EstimatorContext:
    """Everything an estimator may need besides the candidate: data, image size, classes, budget, seed.

    ``data``/``data_kwargs`` are what :func:`latlab.detection.data.load_dataset` takes; ``epochs``/``minutes``
    the training budget of estimators that train; ``threads`` the intra-op threads they use; ``keep_weights``
    whether a training keeps its checkpoints; ``device``/``amp`` where and in which precision it trains;
    ``accuracy_backend`` the backend a trained model's mAP is scored through (``torch``: eager FP32)."""

    data: str | Path = "builtin"
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    imgsz: int = 160
    nc: int | None = None
    seed: int = 0
    epochs: int | None = None
    minutes: float | None = None
    batch: int = 16
    val_max_images: int | None = None
    threads: int | None = None
    keep_weights: bool = False
    device: str = "cpu"
    amp: str = "auto"
    accuracy_backend: str = "torch"


@dataclass
class Estimate:
    """One estimator's verdict on one candidate.

    ``score`` is higher-is-better; ``map``/``map50`` are set when the estimator measured or estimated mAP;
    ``cost_s`` is the CPU time spent (process time, all threads); ``details`` holds estimator-specific
    numbers (epochs trained, proxy components, the screening score of a two-stage estimate ...)."""

    score: float
    cost_s: float
    map: float | None = None
    map50: float | None = None
    pruned: bool = False
    details: dict[str, Any] = field(default_factory=dict)


class AccuracyEstimator(ABC):
    """Base class: ``estimate(cfg)`` scores one candidate given as a model config (a model YAML dict).

    ``model`` may be passed when the caller has built it already (it is not modified); ``out_dir`` is where
    an estimator that trains writes its run folder; ``on_epoch_end`` lets the search prune a training."""

    spec: ClassVar[EstimatorSpec]

    def __init__(self, ctx: EstimatorContext, arg: str | None = None):
        self.ctx, self.arg = ctx, arg

    @abstractmethod
    def estimate(self, cfg: dict[str, Any], model: nn.Module | None = None, *, out_dir: Path | None = None,
                 on_epoch_end: EpochHook | None = None) -> Estimate:
        """Score ``cfg``; see the class docstring."""

    def estimate_baseline(self, cfg: dict[str, Any], model: nn.Module | None = None, *,
                          out_dir: Path | None = None, on_epoch_end: EpochHook | None = None) -> Estimate:
        """Score a reference model the search must beat (a seed detector, not a point of the space); like
        any candidate unless an estimator treats them apart (``twostage`` always trains them)."""
        return self.estimate(cfg, model, out_dir=out_dir, on_epoch_end=on_epoch_end)

    def identity(self) -> dict[str, Any]:
        """What must match for two studies to share results (stored in the study, checked when joining)."""
        return {"estimator": self.spec.name, "arg": self.arg}


_REGISTRY: dict[str, type[AccuracyEstimator]] = {}


def register_estimator(cls: type[AccuracyEstimator]) -> type[AccuracyEstimator]:
    """Class decorator: register ``cls`` under ``cls.spec.name`` (a second class of that name is an error)."""
    name = cls.spec.name
    if name in _REGISTRY:
        raise ValueError(f"accuracy estimator {name!r} is already registered")
    _REGISTRY[name] = cls
    return cls


def unregister_estimator(name: str) -> None:
    """Remove ``name`` (for tests that register a toy estimator)."""
    _REGISTRY.pop(name, None)


def list_estimators() -> list[EstimatorSpec]:
    """Specs of every registered estimator, sorted by name."""
    return [_REGISTRY[n].spec for n in sorted(_REGISTRY)]


def parse_estimator(text: str) -> tuple[str, str | None]:
    """``"synflow"`` → ("synflow", None); ``"supernet:out/s.pt"`` → ("supernet", "out/s.pt")."""
    name, sep, arg = str(text).partition(":")
    return name.strip(), (arg.strip() if sep else None)


def get_estimator_class(name: str) -> type[AccuracyEstimator]:
    """The class registered as ``name``; an unknown name is a one-line ``SearchError`` listing the names."""
    if name in _REGISTRY:
        return _REGISTRY[name]
    close = difflib.get_close_matches(name, list(_REGISTRY), n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    raise SearchError(f"unknown accuracy estimator {name!r}{hint}; expected one of {', '.join(sorted(_REGISTRY))}")


def make_estimator(text: str, ctx: EstimatorContext | None = None) -> AccuracyEstimator:
    """Build the estimator named by ``text`` (``NAME`` or ``NAME:ARG``) for ``ctx``."""
    name, arg = parse_estimator(text)
    cls = get_estimator_class(name)
    if arg is not None and cls.spec.arg is None:
        raise SearchError(f"--accuracy {text!r}: estimator {name!r} takes no argument")
    if arg is None and cls.spec.arg_required:
        raise SearchError(f"--accuracy {name}: needs an argument ({name}:{cls.spec.arg})")
    return cls(ctx or EstimatorContext(), arg)


@contextmanager
def cpu_clock() -> Iterator[Callable[[], float]]:
    """Yield a function returning the CPU seconds (process time, all threads) spent since entering."""
    start = time.process_time()
    yield lambda: time.process_time() - start
