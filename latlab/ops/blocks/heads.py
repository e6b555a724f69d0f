"""Heads: YOLOv5's anchor-based ``Detect`` and a classification head ``Classify``."""

from __future__ import annotations

import math

import torch
from torch import nn

from latlab.ops.activations import make_act
from latlab.ops.registry import register_block


@register_block(kind="detect", family="yolo")
class Detect(nn.Module):
    """YOLOv5 detection head: one 1×1 conv per level predicting ``na × (nc + 5)`` channels.

    YAML: ``[nc, anchors]`` with a list ``from`` (one input per level). ``anchors`` is a list of per-level
    pixel pairs or an int (anchors per level). Strides are set by the builder from a forward pass, after which
    ``anchors`` holds grid units (pixels / stride), as in YOLOv5.

    Train mode returns the raw maps ``[bs, na, ny, nx, no]`` per level; eval mode returns the decoded
    predictions ``[bs, N, no]`` (xywh in input pixels, objectness and class scores after sigmoid).
    ``raw_output = True`` returns the raw maps in eval mode too (a converted model's outputs, which
    :meth:`decode` then turns into predictions in torch).
    """

    def __init__(self, nc: int = 80, anchors: list | int = (), ch: tuple[int, ...] = (), inplace: bool = True):
        super().__init__()
        if isinstance(anchors, int):
            raise ValueError("Detect needs explicit anchors (a list of per-level pixel pairs)")
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        if len(ch) != self.nl:
            raise ValueError(f"Detect has {self.nl} anchor levels but {len(ch)} inputs")
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.inplace = inplace
        self.raw_output = False

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor] | torch.Tensor:
        out = []
        for i in range(self.nl):
            bs, _, ny, nx = x[i].shape
            out.append(self.m[i](x[i]).view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous())
        if self.training or self.raw_output:
            return out
        return self.decode(out)

    def decode(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """Raw per-level maps ``[bs, na, ny, nx, no]`` → predictions ``[bs, N, no]`` (what eval mode returns)."""
        return torch.cat([self._decode(p, i) for i, p in enumerate(maps)], 1)

    def _decode(self, p: torch.Tensor, i: int) -> torch.Tensor:
        bs, na, ny, nx, no = p.shape
        yv, xv = torch.meshgrid(torch.arange(ny, device=p.device, dtype=p.dtype),
                                torch.arange(nx, device=p.device, dtype=p.dtype), indexing="ij")
        grid = torch.stack((xv, yv), 2).view(1, 1, ny, nx, 2) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view(1, na, 1, 1, 2).to(p.dtype)
        xy, wh, conf = p.sigmoid().split((2, 2, no - 4), 4)
        xy = (xy * 2 + grid) * self.stride[i]
        wh = (wh * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, conf), 4).view(bs, na * ny * nx, no)

    def initialize_biases(self, class_frequency: torch.Tensor | None = None) -> None:
        """YOLOv5's prior: objectness for ~8 objects per 640² image, class prior 0.6 / nc."""
        for mi, s in zip(self.m, self.stride, strict=True):
            b = mi.bias.view(self.na, -1)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (640 / float(s)) ** 2)
                if class_frequency is None:
                    b[:, 5:5 + self.nc] += math.log(0.6 / (self.nc - 0.99999))
                else:
                    b[:, 5:5 + self.nc] += torch.log(class_frequency / class_frequency.sum())
            mi.bias = nn.Parameter(b.view(-1))


@register_block(kind="classify", family="heads")
class Classify(nn.Module):
    """Classification head: global average pool → [Linear(hidden) → act → Dropout] → Linear(nc).

    YAML: ``[nc, hidden=0, act='hardswish', dropout=0.0]``. ``hidden=0`` gives pool → Linear (ShuffleNetV2,
    MobileNetV2); MobileNetV3 uses ``hidden=1280`` (large) or ``1024`` (small) with hard-swish.
    """

    def __init__(self, c1: int, nc: int = 1000, hidden: int = 0, act: str | bool = "hardswish",
                 dropout: float = 0.0):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        layers: list[nn.Module] = []
        width = c1
        if hidden:
            layers += [nn.Linear(c1, hidden), make_act(act), nn.Dropout(dropout)]
            width = hidden
        elif dropout:
            layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(width, nc))
        self.fc = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(x), 1))
