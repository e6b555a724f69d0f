"""The data an estimator reads, from its :class:`EstimatorContext`: the dataset (loaded once per process and
context), a seeded batch of real images and labels, and the untrained candidate built with a seeded init.

Estimators share these so that the search's training and the proxies look at the same images and classes,
and so that a score depends on ``ctx.seed`` only, never on the global RNG state (``fork_rng``)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from latlab.detection.data import DetectionData, LetterboxDataset, collate
from latlab.ops.builder import build_model
from latlab.search.estimators.base import EstimatorContext
from latlab.search.objectives import search_dataset


def context_dataset(ctx: EstimatorContext) -> DetectionData:
    """``ctx.data`` loaded (``builtin`` generated at ``ctx.imgsz``), one copy per process
    (:func:`latlab.search.objectives.search_dataset`)."""
    return search_dataset(ctx.data, ctx.data_kwargs, ctx.imgsz)


def context_nc(ctx: EstimatorContext) -> int:
    """Classes of the head: ``ctx.nc``, else the dataset's."""
    return int(ctx.nc) if ctx.nc is not None else int(context_dataset(ctx).nc)


def seeded_batch(ctx: EstimatorContext, n: int, index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``index`` of ``n`` training images (float in [0, 1], letterboxed to ``ctx.imgsz``) and their
    ``[K, 6]`` targets, the images drawn without replacement by a generator seeded with ``ctx.seed``."""
    split = context_dataset(ctx).train
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(ctx.seed))
    lo = (index * n) % max(len(split), 1)
    idx = [int(perm[(lo + k) % len(split)]) for k in range(n)]
    ds = LetterboxDataset(split, ctx.imgsz)
    imgs, targets = collate([ds[i] for i in idx])
    return imgs.float() / 255, targets


def seeded_model(ctx: EstimatorContext, cfg: dict[str, Any], model: nn.Module | None = None, *,
                 salt: int = 0) -> nn.Module:
    """A private copy of ``model`` when given, else ``cfg`` built with its default init under
    ``torch.manual_seed(ctx.seed + salt)``; the caller's global RNG state is left as it was."""
    if model is not None:
        return copy.deepcopy(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(ctx.seed + salt)
        return build_model(cfg, nc=context_nc(ctx), imgsz=ctx.imgsz)
