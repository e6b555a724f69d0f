"""MIT ``thop`` 0.1.1's module rules, for YOLOv5's printed "GFLOPs" (:attr:`CountResult.yolo_gflops`).

YOLOv5's GFLOPs are ``2 ×`` the total of thop's per-module rules: conv ``n_out·(C_in/groups)·K`` without
bias, affine BatchNorm/LayerNorm ``4·n_in``, Linear ``in_features·n_out``, nearest Upsample ``n_out``, AvgPool
``n_out``, AdaptiveAvgPool ``(K+1)·n_out``, ReLU/SiLU/MaxPool 0, applied, as thop does, only to modules whose
exact type thop registers. Functional ops (``F.conv2d``) are invisible to that convention; the op rules
(:mod:`latlab.profiling.op_rules`) see them. The counter calls :func:`thop_ops` from a forward hook.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def thop_ops(m: nn.Module, inputs: tuple, y: Any) -> float:
    """What MIT thop 0.1.1 adds to ``m.total_ops`` for one call (its ``register_hooks`` table)."""
    t = type(m)
    x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    if not isinstance(y, torch.Tensor) or x is None:
        return 0.0
    if t in _THOP_CONV:
        return float(y.numel() * (x.shape[1] // m.groups) * math.prod(m.weight.shape[2:]))
    if t in _THOP_NORM:
        flops = 2 * x.numel()
        if getattr(m, "affine", False) or getattr(m, "elementwise_affine", False):
            flops *= 2
        return float(flops)
    if t is nn.Linear:
        return float(m.in_features * y.numel())
    if t in _THOP_AVGPOOL:
        return float(y.numel())
    if t in _THOP_ADAPTIVE_AVG:
        kernel = math.prod(a / b for a, b in zip(x.shape[2:], y.shape[2:], strict=False))
        return float(int((kernel + 1) * y.numel()))
    if t in _THOP_UPSAMPLE:
        mode = getattr(m, "mode", "nearest")
        return float(y.numel() * {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 259,
                                  "trilinear": 31}.get(mode, 0))
    if t is nn.PReLU and not m.training:
        return float(x.numel())
    if t is nn.Softmax and m.dim is not None:
        nf = x.shape[m.dim]
        return float((x.numel() // nf) * (3 * nf - 1))
    return 0.0


_THOP_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_THOP_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm,
              nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_THOP_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_THOP_ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_THOP_UPSAMPLE = (nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d)
