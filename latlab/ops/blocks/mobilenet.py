"""MobileNetV2 inverted residual and MobileNetV3 block (torchvision-compatible parameter layout).

MobileNetV2 (Sandler et al. 2018): 1×1 expand → dw 3×3 → 1×1 linear projection, residual at stride 1 with
equal widths. MobileNetV3 (Howard et al. 2019) adds squeeze-excite, hard-swish and 5×5 kernels.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from latlab.ops.activations import make_act
from latlab.ops.blocks.se import SqueezeExcite, make_divisible
from latlab.ops.blocks.yolo import Conv
from latlab.ops.family import CostTally, SearchFamily, Stage
from latlab.ops.registry import register_block, register_family


def _cba(c1: int, c2: int, k: int, s: int, groups: int, act: bool | str) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c1, c2, k, s, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(c2),
                         make_act(act))


@register_block(family="mobilenet", aliases=("MobileNetV2Block", "MBConv"))
class MV2Block(nn.Module):
    """MobileNetV2 inverted residual. YAML: ``[c2, s=1, t=6, act='relu6', k=3]`` (t = expansion ratio)."""

    def __init__(self, c1: int, c2: int, s: int = 1, t: float = 6, act: bool | str = "relu6", k: int = 3):
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {s}")
        hidden = round(c1 * t)
        layers: list[nn.Module] = []
        if t != 1:
            layers.append(_cba(c1, hidden, 1, 1, 1, act))
        layers += [_cba(hidden, hidden, k, s, hidden, act), _cba(hidden, c2, 1, 1, 1, False)]
        self.conv = nn.Sequential(*layers)
        self.use_res = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return x + y if self.use_res else y


@register_block("MobileNet_Block", family="mobilenet", aliases=("MobileNetV3Block", "MBv3Block"))
class MobileNetV3Block(nn.Module):
    """MobileNetV3 bneck. YAML (blog order): ``[c2, hidden, k, s, use_se, use_hs]``.

    ``hidden`` is the expanded width (no expand conv when it equals c1); ``use_se`` adds squeeze-excite with
    ``make_divisible(hidden / 4, 8)`` channels; ``use_hs`` picks hard-swish (1/True) or ReLU (0/False), or
    any activation name (``silu``...). Residual at stride 1 with equal widths.
    """

    def __init__(self, c1: int, c2: int, hidden: int, k: int = 3, s: int = 1, use_se: bool | int = False,
                 use_hs: bool | int | str = False):
        super().__init__()
        if s not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {s}")
        if k % 2 == 0:
            raise ValueError(f"kernel must be odd, got k={k}")
        act = use_hs if isinstance(use_hs, str) else ("hardswish" if use_hs else "relu")
        layers: list[nn.Module] = []
        if hidden != c1:
            layers.append(_cba(c1, hidden, 1, 1, 1, act))
        layers.append(_cba(hidden, hidden, k, s, hidden, act))
        if use_se:
            layers.append(SqueezeExcite(hidden, make_divisible(hidden // 4, 8), gate="hardsigmoid"))
        layers.append(_cba(hidden, c2, 1, 1, 1, False))
        self.block = nn.Sequential(*layers)
        self.use_res = s == 1 and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.use_res else y


@register_block("conv_bn_hswish", family="mobilenet", aliases=("CBH",))
class ConvBNHswish(Conv):
    """3×3 Conv + BN + hard-swish stem of the MobileNetV3 / PP-LCNet recipes. YAML: ``[c2, s=2]``."""

    def __init__(self, c1: int, c2: int, s: int = 2):
        super().__init__(c1, c2, 3, s, act="hardswish")


def _round8(x: float) -> int:
    """Expanded width of a searched MobileNetV3 block: a multiple of 8, at least 8."""
    return max(8, int(math.ceil(x / 8) * 8))


def _inverted_residual_cost(t: CostTally, st: Stage, cin: float, stride: int, hw_in: float, hw_out: float,
                            se: bool) -> None:
    h = cin * st.expansion
    t.conv(cin, h, 1, hw_in)
    t.conv(h, h, st.kernel, hw_out, h)
    if se:
        t.conv(h, h / 4, 1, 1)
        t.conv(h / 4, h, 1, 1)
        t.traffic(4 * hw_out * h)
    t.conv(h, st.width, 1, hw_out)


def _mv2_cost(t: CostTally, st: Stage, cin: float, stride: int, hw_in: float, hw_out: float) -> None:
    _inverted_residual_cost(t, st, cin, stride, hw_in, hw_out, se=False)


def _mv3_cost(t: CostTally, st: Stage, cin: float, stride: int, hw_in: float, hw_out: float) -> None:
    _inverted_residual_cost(t, st, cin, stride, hw_in, hw_out, se=st.se)


register_family(SearchFamily(
    name="mobilenetv2", module="MV2Block", short="mv2", knobs=("kernel", "expansion", "act"),
    block_args=lambda st, cin, s: [st.width, s, st.expansion, st.act, st.kernel], block_cost=_mv2_cost,
))
register_family(SearchFamily(
    name="mobilenetv3", module="MobileNet_Block", short="mv3", knobs=("kernel", "expansion", "se", "act"),
    block_args=lambda st, cin, s: [st.width, _round8(cin * st.expansion), st.kernel, s, st.se, st.act],
    block_cost=_mv3_cost, se_bonus=0.008,
))
