"""ShuffleNet V1/V2 units and the stems used by the YOLOv5-ShuffleNetV2 blog recipes.

ShuffleNetV2 (Ma et al., ECCV 2018): a stride-1 unit splits the channels in two, transforms one half with
1×1 → depthwise 3×3 → 1×1 (equal widths, guideline G1; no group conv, G2), concatenates (no add, G4) and
shuffles. A stride-2 unit runs two branches on the full input and doubles the channels.
"""

from __future__ import annotations

import torch
from torch import nn

from latlab.ops.blocks.yolo import Conv
from latlab.ops.family import CostTally, SearchFamily, Stage
from latlab.ops.registry import register_block, register_family


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` channel groups: reshape to (b, g, c/g, h, w), swap, flatten back."""
    b, c, h, w = x.shape
    x = x.view(b, groups, c // groups, h, w).transpose(1, 2).contiguous()
    return x.view(b, c, h, w)


def _conv_bn(c1: int, c2: int, k: int, s: int, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(c1, c2, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(c2)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


@register_block(family="shufflenet")
class CBRM(nn.Module):
    """Stem of seed 000: Conv 3×3 s2 + BN + ReLU, then MaxPool 3×3 s2 (stride 4 in all). YAML: ``[c2]``.

    Identical to torchvision ShuffleNetV2's ``conv1`` + ``maxpool``.
    """

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv = nn.Sequential(*_conv_bn(c1, c2, 3, 2))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.conv(x))


@register_block(family="shufflenet")
class CRM(nn.Module):
    """Stem of seed 003: Conv k×k stride s + BN + ReLU, then MaxPool 3×3 s2. YAML: ``[c2, k=3, s=2]``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 2):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(c1, c2, k, s, padding=1, bias=False), nn.BatchNorm2d(c2),
                                   nn.ReLU(inplace=True))
        self.mp = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mp(self.conv1(x))


@register_block(family="shufflenet")
class StemBlock(nn.Module):
    """YOLOv5-face stem (seed 003 variant): Conv s2, then a two-way split (1×1 → 3×3 s2 | maxpool 2×2),
    concatenated and fused by a 1×1 Conv. Output stride 4. YAML: ``[c2, k=3, s=2, p=None, g=1, d=1, act=True]``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 2, p: int | None = None, g: int = 1,
                 d: int = 1, act: bool | str = True):
        super().__init__()
        self.stem_1 = Conv(c1, c2, k, s, p, g, d, act)
        self.stem_2a = Conv(c2, c2 // 2, 1, 1)
        self.stem_2b = Conv(c2 // 2, c2, 3, 2)
        self.stem_2c = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.stem_3 = Conv(c2 * 2, c2, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem_1(x)
        return self.stem_3(torch.cat((self.stem_2b(self.stem_2a(y)), self.stem_2c(y)), 1))


@register_block("Shuffle_Block", family="shufflenet", aliases=("InvertedResidual", "ShuffleV2Block"))
class ShuffleV2Unit(nn.Module):
    """ShuffleNetV2 unit (paper Fig. 3c/d). YAML: ``[c2, stride]`` (seed 000 spells it ``Shuffle_Block``,
    seed 003 ``InvertedResidual``).

    stride 1: ``c1 == c2``; half the channels pass through, half go 1×1 → dw 3×3 → 1×1; concat; shuffle.
    stride 2: branch 1 = dw 3×3 s2 → 1×1, branch 2 = 1×1 → dw 3×3 s2 → 1×1, each ``c2 / 2`` wide.
    """

    def __init__(self, c1: int, c2: int, stride: int = 1):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        if c2 % 2:
            raise ValueError(f"output channels must be even (two branches of c2/2), got c2={c2}")
        if stride == 1 and c1 != c2:
            raise ValueError(f"a stride-1 ShuffleNetV2 unit keeps its width: input channels {c1} != output {c2}")
        self.stride = stride
        bf = c2 // 2
        if stride == 2:
            self.branch1 = nn.Sequential(*_conv_bn(c1, c1, 3, 2, groups=c1, relu=False), *_conv_bn(c1, bf, 1, 1))
        else:
            self.branch1 = nn.Identity()
        c_in2 = c1 if stride == 2 else bf
        self.branch2 = nn.Sequential(
            *_conv_bn(c_in2, bf, 1, 1),
            *_conv_bn(bf, bf, 3, stride, groups=bf, relu=False),
            *_conv_bn(bf, bf, 1, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


@register_block("ShuffleV1Block", family="shufflenet", aliases=("ShuffleNetV1Unit",))
class ShuffleV1Unit(nn.Module):
    """ShuffleNetV1 unit (Zhang et al. 2018): group 1×1 → shuffle → dw 3×3 → group 1×1, added to the input
    (stride 1) or concatenated with a 3×3 avg-pooled input (stride 2). YAML: ``[c2, stride=1, groups=3]``.
    """

    def __init__(self, c1: int, c2: int, stride: int = 1, groups: int = 3, first_group: bool = True):
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        self.stride = stride
        out = c2 - c1 if stride == 2 else c2
        if stride == 1 and c1 != c2:
            raise ValueError(f"a stride-1 ShuffleNetV1 unit keeps its width: input {c1} != output {c2}")
        if out <= 0:
            raise ValueError(f"stride-2 ShuffleNetV1 unit needs c2 > c1, got c1={c1}, c2={c2}")
        mid = c2 // 4
        g1 = groups if first_group else 1
        checks = (("input channels", c1, g1), ("bottleneck channels", mid, groups), ("branch output", out, groups))
        for what, value, g in checks:
            if value % g:
                raise ValueError(f"{what} {value} not divisible by groups {g}")
        self.groups = groups
        self.gconv1 = nn.Sequential(*_conv_bn(c1, mid, 1, 1, groups=g1))
        self.dw = nn.Sequential(*_conv_bn(mid, mid, 3, stride, groups=mid, relu=False))
        self.gconv2 = nn.Sequential(*_conv_bn(mid, out, 1, 1, groups=groups, relu=False))
        self.pool = nn.AvgPool2d(3, 2, 1) if stride == 2 else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.gconv2(self.dw(channel_shuffle(self.gconv1(x), self.groups)))
        if self.pool is not None:
            return self.relu(torch.cat((self.pool(x), y), 1))
        return self.relu(x + y)


def _shuffle_cost(t: CostTally, st: Stage, cin: float, stride: int, hw_in: float, hw_out: float) -> None:
    b = st.width / 2
    if stride == 2:
        t.conv(cin, cin, 3, hw_out, cin)
        t.conv(cin, b, 1, hw_out)
        t.conv(cin, b, 1, hw_in)
    else:
        t.conv(b, b, 1, hw_in)
    t.conv(b, b, 3, hw_out, b)
    t.conv(b, b, 1, hw_out)


register_family(SearchFamily(
    name="shufflenetv2", module="Shuffle_Block", short="shuffle", knobs=(),
    block_args=lambda st, cin, s: [st.width, s], block_cost=_shuffle_cost,
    width_rule=lambda w: "ShuffleNetV2 units need even channels (two branches of width/2)" if w % 2 else None,
))
