"""PP-LCNet depthwise-separable block (Cui et al. 2021, PaddleClas).

dw k×k (stride s) + BN + hard-swish → [SE with c/4 squeeze] → 1×1 + BN + hard-swish. The paper's point is
that on Intel CPUs with MKLDNN this plain, unbranched block is faster than MobileNetV3's at equal accuracy.
"""

from __future__ import annotations

import torch
from torch import nn

from latlab.ops.activations import make_act
from latlab.ops.blocks.se import SqueezeExcite
from latlab.ops.family import CostTally, SearchFamily, Stage
from latlab.ops.registry import register_block, register_family


@register_block(family="lcnet", aliases=("DepthSepConv", "LC_Block"))
class DepSepConv(nn.Module):
    """PP-LCNet block. YAML: ``[c2, s=1, k=3, use_se=False, act='hardswish']``."""

    def __init__(self, c1: int, c2: int, s: int = 1, k: int = 3, use_se: bool = False,
                 act: bool | str = "hardswish"):
        super().__init__()
        if k % 2 == 0:
            raise ValueError(f"kernel must be odd, got k={k}")
        self.dw = nn.Sequential(nn.Conv2d(c1, c1, k, s, k // 2, groups=c1, bias=False), nn.BatchNorm2d(c1),
                                make_act(act))
        self.se = SqueezeExcite(c1, c1 // 4, gate="hardsigmoid") if use_se else nn.Identity()
        self.pw = nn.Sequential(nn.Conv2d(c1, c2, 1, 1, 0, bias=False), nn.BatchNorm2d(c2), make_act(act))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.se(self.dw(x)))


def _lcnet_cost(t: CostTally, st: Stage, cin: float, stride: int, hw_in: float, hw_out: float) -> None:
    t.conv(cin, cin, st.kernel, hw_out, cin)
    if st.se:
        t.conv(cin, cin / 4, 1, 1)
        t.conv(cin / 4, cin, 1, 1)
    t.conv(cin, st.width, 1, hw_out)


register_family(SearchFamily(
    name="pplcnet", module="DepSepConv", short="lc", knobs=("kernel", "se", "act"),
    block_args=lambda st, cin, s: [st.width, s, st.kernel, st.se, st.act], block_cost=_lcnet_cost,
))
