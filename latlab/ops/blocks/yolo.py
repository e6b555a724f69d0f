"""YOLOv5 core blocks (v6/v7.0 definitions), re-implemented.

Argument order is YOLOv5's: the builder passes ``c1`` (input channels) first, then the YAML args.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from latlab.ops.activations import make_act
from latlab.ops.family import CostTally, SearchFamily, Stage
from latlab.ops.registry import register_block, register_external, register_family


def autopad(k: int | list[int], p: int | None = None, d: int = 1) -> int | list[int]:
    """'Same' padding for kernel ``k`` and dilation ``d`` when ``p`` is None."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


@register_block(family="yolo")
class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm2d + activation (SiLU by default). YAML: ``[c2, k=1, s=1, p=None, g=1, d=1, act=True]``.

    ``act`` may also be an activation name (``relu``, ``relu6``, ``hardswish``, ...).
    """

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 d: int = 1, act: bool | str = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


@register_block(family="yolo")
class DWConv(Conv):
    """Depthwise-style Conv: groups = gcd(c1, c2). YAML: ``[c2, k=1, s=1, d=1, act=True]``."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act: bool | str = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


@register_block(family="yolo")
class Bottleneck(nn.Module):
    """Standard bottleneck: 1x1 Conv → 3x3 Conv, residual when ``shortcut`` and c1 == c2.

    YAML: ``[c2, shortcut=True, g=1, e=0.5]``.
    """

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register_block(kind="repeat", family="yolo")
class C3(nn.Module):
    """CSP bottleneck with 3 convolutions (YOLOv5 v6). YAML: ``[c2, shortcut=True, g=1, e=0.5]``.

    The layer's ``number`` becomes ``n``, the count of inner bottlenecks.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(self._inner(c_, shortcut, g) for _ in range(n)))

    @staticmethod
    def _inner(c_: int, shortcut: bool, g: int) -> nn.Module:
        return Bottleneck(c_, c_, shortcut, g, e=1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register_block(family="yolo")
class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: three chained k×k max-pools concatenated. YAML: ``[c2, k=5]``."""

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@register_block(family="yolo")
class Focus(nn.Module):
    """Space-to-depth (2×2 pixel blocks into channels) then Conv (YOLOv5 ≤ v5). YAML: ``[c2, k=1, s=1, p=None, g=1, act=True]``."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p: int | None = None, g: int = 1,
                 act: bool | str = True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


@register_block(kind="concat", family="yolo")
class Concat(nn.Module):
    """Concatenate a list of tensors along ``dimension``. YAML: ``[dimension=1]`` with a list ``from``."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


# torch classes under YOLOv5's YAML spellings, registered as they are so counters (thop, fvcore) know them.
# nn.Upsample YAML: [size=None, scale_factor=2, mode='nearest']; nn.MaxPool2d: [kernel_size, stride, padding].
register_external("nn.Upsample", nn.Upsample, kind="same", family="torch", aliases=("Upsample",))
register_external("nn.MaxPool2d", nn.MaxPool2d, kind="same", family="torch", aliases=("MaxPool2d",))
register_external("nn.BatchNorm2d", nn.BatchNorm2d, kind="bn", family="torch", aliases=("BatchNorm2d",))
register_external("nn.Identity", nn.Identity, kind="same", family="torch", aliases=("Identity",))


def _c3_rows(st: Stage) -> list[list[Any]]:
    """A C3 stage: a 3x3 stride-2 Conv to ``width``, then one C3 of ``depth`` bottlenecks."""
    return [[-1, 1, "Conv", [st.width, 3, 2]], [-1, st.depth, "C3", [st.width]]]


def _c3_cost(t: CostTally, st: Stage, hw: float) -> None:
    w, hw_out = st.width, hw / 4
    t.conv(st.c_in, w, 3, hw_out)
    for _ in range(2):
        t.conv(w, w / 2, 1, hw_out)
    for _ in range(st.depth):
        t.conv(w / 2, w / 2, 1, hw_out)
        t.conv(w / 2, w / 2, 3, hw_out)
    t.conv(w, w, 1, hw_out)


register_family(SearchFamily(
    name="c3", module="C3", short="c3", knobs=(), stage_rows=_c3_rows, stage_cost=_c3_cost, depth_in_block=True,
    width_rule=lambda w: "C3 needs width >= 2 (hidden width = width/2)" if w < 2 else None,
))
