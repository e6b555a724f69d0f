"""``supernet:FILE``: mAP50-95 estimated with weights inherited from a trained weight-sharing supernet.

The candidate's slices of the shared tensors are copied into its stand-alone model, BatchNorm statistics are
recalibrated on a few fixed training batches, and mAP50-95 is measured on the first validation images (see
:mod:`latlab.search.supernet`; train the file with ``latlab supernet train``). The supernet and the
calibration batches are loaded once per estimator. A file made for another space or image size, a corrupt
file, or a candidate that is not a point of the supernet's space is a one-line ``SearchError``; a seed
detector (a search baseline, never a point of the space) gets no score.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from latlab.errors import SearchError
from latlab.search.estimators.base import (
    AccuracyEstimator,
    EpochHook,
    Estimate,
    EstimatorSpec,
    cpu_clock,
    register_estimator,
)
from latlab.search.estimators.data import context_dataset
from latlab.search.supernet import SupernetScorer, check_cfg_space, load_supernet
from latlab.threads import torch_threads

DEFAULT_VAL_IMAGES = 48
BN_BATCHES = 2


@register_estimator
class SupernetEstimator(AccuracyEstimator):
    """Weight-sharing estimate: inherit, recalibrate BN, evaluate on a small fixed validation subset."""

    spec = EstimatorSpec(name="supernet", kind="weight-sharing", objective="map", arg="FILE", arg_required=True,
                         description="mAP50-95 with weights inherited from a trained supernet (latlab supernet "
                                     "train), BN recalibrated on a few batches")

    _scorer: SupernetScorer | None = None

    def scorer(self) -> SupernetScorer:
        """The loaded supernet and its calibration/validation data (loaded on first use)."""
        if self._scorer is None:
            if not self.arg:
                raise SearchError("--accuracy supernet: needs a file (supernet:FILE)")
            net, _ = load_supernet(Path(self.arg), None, imgsz=self.ctx.imgsz)
            ds = context_dataset(self.ctx)
            if ds.nc != net.nc:
                raise SearchError(f"{self.arg}: supernet has nc={net.nc} but the data has nc={ds.nc}")
            self._scorer = SupernetScorer(net, ds, bn_batches=BN_BATCHES, batch=self.ctx.batch,
                                          val_images=self.ctx.val_max_images or DEFAULT_VAL_IMAGES, seed=self.ctx.seed)
        return self._scorer

    def estimate(self, cfg: dict[str, Any], model: nn.Module | None = None, *, out_dir: Path | None = None,
                 on_epoch_end: EpochHook | None = None) -> Estimate:
        """Score ``cfg`` (a point of the supernet's space); ``model``, ``out_dir`` and the hook are unused."""
        with torch_threads(self.ctx.threads or None), cpu_clock() as cpu:
            sc = self.scorer()
            check_cfg_space(sc.net, cfg)
            m = sc.score(cfg)
        return Estimate(score=float(m["map"]), cost_s=cpu(), map=float(m["map"]), map50=float(m["map50"]),
                        details={"val_images": sc.val_images, "bn_batches": len(sc.calib)})

    def estimate_baseline(self, cfg: dict[str, Any], model: nn.Module | None = None, *,
                          out_dir: Path | None = None, on_epoch_end: EpochHook | None = None) -> Estimate:
        """A seed detector is not a point of the space, so the supernet holds no weights for it: no score
        (NaN, with a note), rather than a failed trial or a number from the wrong weights."""
        return Estimate(score=float("nan"), cost_s=0.0,
                        details={"note": "not a point of the supernet's space: no weight-sharing estimate"})

    def identity(self) -> dict[str, Any]:
        """Estimator, file and the number of validation images (what changes the scores)."""
        return {**super().identity(), "val_images": self.ctx.val_max_images or DEFAULT_VAL_IMAGES}
