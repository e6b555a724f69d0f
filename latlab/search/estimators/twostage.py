"""``twostage``: screen every candidate with a cheap estimator, train only the promising ones.

``twostage`` screens with ``synflow``, ``twostage:NAME`` with estimator ``NAME`` (any registered estimator
that is not itself composite). The screen scores seen so far are kept (and can be preloaded with
:meth:`TwoStageEstimator.remember`, e.g. from a resumed study); a candidate is trained with ``train``
when it is among the first ``min_trained`` screened, or when its screen score ranks within the top
``top_fraction`` (default 25 %) of all scores seen, itself included. An untrained candidate gives
``Estimate(pruned=True)`` with ``details["screen_score"]``; a trained one its mAP, with both numbers in
``details``. ``cost_s`` is the screen's plus the training's CPU seconds."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from torch import nn

from latlab.errors import SearchError
from latlab.search.estimators.base import (
    AccuracyEstimator,
    EpochHook,
    Estimate,
    EstimatorContext,
    EstimatorSpec,
    make_estimator,
    register_estimator,
)
from latlab.search.estimators.train import TrainEstimator

DEFAULT_SCREEN = "synflow"


@register_estimator
class TwoStageEstimator(AccuracyEstimator):
    """Screen, then train the top fraction; see the module docstring."""

    spec = EstimatorSpec("twostage", "composite", f"screen with a cheap estimator (twostage:NAME, default "
                         f"{DEFAULT_SCREEN}), train the top 25 % seen so far", objective="map", arg="SCREEN")
    top_fraction: float = 0.25
    min_trained: int = 3

    def __init__(self, ctx: EstimatorContext, arg: str | None = None):
        super().__init__(ctx, arg)
        self.screen = make_estimator(arg or DEFAULT_SCREEN, ctx)
        if self.screen.spec.kind in ("composite", "training"):
            raise SearchError(f"--accuracy twostage:{arg}: the screen must be a cheap estimator, not "
                              f"{self.screen.spec.kind} {self.screen.spec.name!r}")
        self.trainer = TrainEstimator(ctx)
        self.seen: list[float] = []

    @property
    def nc(self) -> int:
        return self.trainer.nc

    def budget(self) -> dict[str, Any]:
        return self.trainer.budget()

    def identity(self) -> dict[str, Any]:
        return {"estimator": self.spec.name, "arg": self.screen.spec.name if self.arg is None else self.arg,
                "top_fraction": self.top_fraction, "min_trained": self.min_trained}

    def remember(self, scores: list[float]) -> None:
        """Add screen scores seen elsewhere (a resumed study's trials) to the history."""
        self.seen.extend(float(s) for s in scores if s is not None and math.isfinite(float(s)))

    def selected(self, score: float) -> bool:
        """Whether a candidate with screen ``score`` (already in the history) is trained."""
        n = len(self.seen)
        better = sum(1 for s in self.seen if s > score)
        return n <= self.min_trained or better < max(1, math.ceil(self.top_fraction * n))

    def estimate_baseline(self, cfg: dict[str, Any], model: nn.Module | None = None, *,
                          out_dir: Path | None = None, on_epoch_end: EpochHook | None = None) -> Estimate:
        """Screen and always train a reference model (a search's seed detectors), without adding its screen
        score to the history: it is not a point of the space."""
        return self.estimate(cfg, model, out_dir=out_dir, on_epoch_end=on_epoch_end, _baseline=True)

    def estimate(self, cfg: dict[str, Any], model: nn.Module | None = None, *, out_dir: Path | None = None,
                 on_epoch_end: EpochHook | None = None, _baseline: bool = False) -> Estimate:
        scr = self.screen.estimate(cfg, model)
        if not _baseline:
            self.seen.append(float(scr.score))
        info = {"screen_score": float(scr.score), "screen_estimator": self.screen.spec.name,
                "screen_cost_s": scr.cost_s, "screen_rank": 1 + sum(1 for s in self.seen if s > scr.score),
                "screened": len(self.seen)}
        if not _baseline and not self.selected(float(scr.score)):
            return Estimate(score=float("nan"), cost_s=scr.cost_s, pruned=True, details={**info, "trained": False})
        res = self.trainer.estimate(cfg, model, out_dir=out_dir, on_epoch_end=on_epoch_end)
        return Estimate(score=res.score, cost_s=scr.cost_s + res.cost_s, map=res.map, map50=res.map50,
                        pruned=res.pruned, details={**res.details, **info, "trained": True})
