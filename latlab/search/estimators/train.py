"""``train``: today's short training (the search's default estimator), wrapping :class:`TrainedAccuracy`.

The budget is ``ctx.epochs`` or ``ctx.minutes`` (neither: 3 epochs, the search's per-trial default); the
score is the mAP50-95 of the EMA weights after the budget (through ``ctx.accuracy_backend`` when it is not eager
torch: :class:`TrainedAccuracy`), ``on_epoch_end`` is passed to the trainer so a
study can prune. ``cost_s`` is CPU seconds (all threads)."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from torch import nn

from latlab.search.estimators.base import (
    AccuracyEstimator,
    EpochHook,
    Estimate,
    EstimatorContext,
    EstimatorSpec,
    cpu_clock,
    register_estimator,
)
from latlab.search.objectives import TrainedAccuracy
from latlab.threads import torch_threads


@register_estimator
class TrainEstimator(AccuracyEstimator):
    """Short training with the detection harness; see the module docstring."""

    spec = EstimatorSpec("train", "training", "mAP50-95 after a short training (--epochs / --minutes, "
                         "default 3 epochs)", objective="map")

    def __init__(self, ctx: EstimatorContext, arg: str | None = None):
        super().__init__(ctx, arg)
        self.trainer = TrainedAccuracy(data=ctx.data, imgsz=ctx.imgsz, epochs=ctx.epochs, minutes=ctx.minutes,
                                       batch=ctx.batch, seed=ctx.seed, data_kwargs=ctx.data_kwargs,
                                       keep_weights=ctx.keep_weights, val_max_images=ctx.val_max_images,
                                       device=ctx.device, amp=ctx.amp, accuracy_backend=ctx.accuracy_backend,
                                       backend_threads=ctx.threads or 1)

    @property
    def nc(self) -> int:
        """Classes of the data the candidates train on."""
        return self.trainer.nc

    def budget(self) -> dict[str, Any]:
        """The per-trial training budget (recorded in the study; must match when joining)."""
        return self.trainer.budget()

    def estimate(self, cfg: dict[str, Any], model: nn.Module | None = None, *, out_dir: Path | None = None,
                 on_epoch_end: EpochHook | None = None) -> Estimate:
        with cpu_clock() as spent, torch_threads(self.ctx.threads):
            if out_dir is None:
                with TemporaryDirectory(prefix="latlab-train-") as tmp:
                    res = self.trainer(cfg, Path(tmp), on_epoch_end)
            else:
                res = self.trainer(cfg, Path(out_dir), on_epoch_end)
            cost = spent()
        return Estimate(score=res.map, cost_s=cost, map=res.map, map50=res.map50, pruned=res.pruned,
                        details={"epochs": res.epochs, "train_s": res.train_s, "stopped_by": res.stopped_by,
                                 **res.details()})
