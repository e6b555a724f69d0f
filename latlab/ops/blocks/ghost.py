"""GhostNet blocks (Han et al., CVPR 2020): half the features from a conv, half from a cheap depthwise op.

Two definitions are registered because users meet both: YOLOv5's (``GhostConv``, ``GhostBottleneck``,
``C3Ghost``, as in seed 002 and YOLOv5 v7.0's ``common.py``) and the original GhostNet classification
bottleneck (``GhostNetBlock``, with SE and an explicit hidden width) used by the GhostNet 1.0 zoo entry.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from latlab.ops.blocks.se import SqueezeExcite, make_divisible
from latlab.ops.blocks.yolo import C3, Conv, DWConv
from latlab.ops.family import CostTally, SearchFamily, Stage
from latlab.ops.registry import register_block, register_family


@register_block(family="ghost")
class GhostConv(nn.Module):
    """YOLOv5 Ghost convolution: Conv k×k to c2/2, then a 5×5 depthwise Conv of that, concatenated.

    YAML: ``[c2, k=1, s=1, g=1, act=True]``.
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act: bool | str = True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


@register_block(family="ghost")
class GhostBottleneck(nn.Module):
    """YOLOv5 Ghost bottleneck: GhostConv 1×1 → (dw k×k s2 if stride 2) → GhostConv 1×1 linear, plus a
    shortcut (identity, or dw + 1×1 Conv when striding). YAML: ``[c2, k=3, s=1]``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        if s == 1 and c1 != c2:
            raise ValueError(f"a stride-1 GhostBottleneck adds its input: input channels {c1} != output {c2}")
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        self.shortcut = (
            nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if s == 2 else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


@register_block(kind="repeat", family="ghost")
class C3Ghost(C3):
    """C3 whose inner bottlenecks are ``GhostBottleneck``. YAML: ``[c2, shortcut=True, g=1, e=0.5]``."""

    @staticmethod
    def _inner(c_: int, shortcut: bool, g: int) -> nn.Module:
        return GhostBottleneck(c_, c_)


class GhostModule(nn.Module):
    """Original Ghost module: 1×1 conv to ceil(c2/ratio), cheap dw conv for the rest, concat, trim to c2."""

    def __init__(self, c1: int, c2: int, ratio: int = 2, dw_size: int = 3, relu: bool = True):
        super().__init__()
        self.c2 = c2
        init = math.ceil(c2 / ratio)
        new = init * (ratio - 1)
        act = [nn.ReLU(inplace=True)] if relu else []
        self.primary_conv = nn.Sequential(nn.Conv2d(c1, init, 1, 1, 0, bias=False), nn.BatchNorm2d(init), *act)
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init, new, dw_size, 1, dw_size // 2, groups=init, bias=False), nn.BatchNorm2d(new),
            *([nn.ReLU(inplace=True)] if relu else []),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.primary_conv(x)
        return torch.cat((y, self.cheap_operation(y)), 1)[:, : self.c2]


@register_block(family="ghost", aliases=("GhostNetBottleneck",))
class GhostNetBlock(nn.Module):
    """GhostNet classification bottleneck: Ghost(c1→hidden, ReLU) → [dw k×k s2] → [SE] → Ghost(hidden→c2),
    plus identity or dw + 1×1 shortcut. YAML: ``[c2, hidden, k=3, s=1, se_ratio=0]``.
    """

    def __init__(self, c1: int, c2: int, hidden: int, k: int = 3, s: int = 1, se_ratio: float = 0.0):
        super().__init__()
        self.ghost1 = GhostModule(c1, hidden, relu=True)
        self.conv_dw = (
            nn.Sequential(nn.Conv2d(hidden, hidden, k, s, (k - 1) // 2, groups=hidden, bias=False),
                          nn.BatchNorm2d(hidden))
            if s > 1 else nn.Identity()
        )
        self.se = (
            SqueezeExcite(hidden, make_divisible(hidden * se_ratio, 4), gate="hardsigmoid")
            if se_ratio else nn.Identity()
        )
        self.ghost2 = GhostModule(hidden, c2, relu=False)
        if c1 == c2 and s == 1:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(c1, c1, k, s, (k - 1) // 2, groups=c1, bias=False), nn.BatchNorm2d(c1),
                nn.Conv2d(c1, c2, 1, 1, 0, bias=False), nn.BatchNorm2d(c2),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ghost2(self.se(self.conv_dw(self.ghost1(x))))
        return y + self.shortcut(x)


def _ghost_cost(t: CostTally, st: Stage, cin: float, stride: int, hw_in: float, hw_out: float) -> None:
    w, k = st.width, st.kernel
    h = w / 2
    t.conv(cin, h / 2, 1, hw_in)
    t.conv(h / 2, h / 2, 5, hw_in, h / 2)
    if stride == 2:
        t.conv(h, h, k, hw_out, h)
        t.conv(cin, cin, k, hw_out, cin)
        t.conv(cin, w, 1, hw_out)
    t.conv(h, w / 2, 1, hw_out)
    t.conv(w / 2, w / 2, 5, hw_out, w / 2)


register_family(SearchFamily(
    name="ghost", module="GhostBottleneck", short="ghost", knobs=("kernel",),
    block_args=lambda st, cin, s: [st.width, st.kernel, s], block_cost=_ghost_cost,
    width_rule=lambda w: ("Ghost bottlenecks need width % 4 == 0 (a GhostConv to width/2 concatenates two halves)"
                          if w % 4 else None),
))
