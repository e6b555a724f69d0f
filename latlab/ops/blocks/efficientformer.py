"""EfficientFormer blocks (Li et al., NeurIPS 2022), the seed-004 recipe's backbone.

``Meta4D`` is the 4-D (conv-friendly) MetaFormer block: pooling token mixer (avg-pool minus identity) and a
1×1-conv MLP, each with a layer scale. ``Meta3D`` flattens to tokens and uses multi-head self-attention and a
linear MLP. Stem and ``Embedding`` (3×3 s2 conv + BN) downsample between stages.

Deviation, stated: the paper's attention adds learned biases indexed for a fixed 7×7 resolution; detectors
see varying resolutions, so ``Meta3D`` here omits that bias (parameter count differs by heads × 49).
"""

from __future__ import annotations

import torch
from torch import nn

from latlab.ops.registry import register_block


@register_block(family="efficientformer", aliases=("EFStem",))
class EfficientFormerStem(nn.Module):
    """Two 3×3 s2 conv + BN + ReLU layers (stride 4), c2/2 then c2 channels. YAML: ``[c2]``."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(c1, c2 // 2, 3, 2, 1), nn.BatchNorm2d(c2 // 2), nn.ReLU(inplace=True),
            nn.Conv2d(c2 // 2, c2, 3, 2, 1), nn.BatchNorm2d(c2), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


@register_block(family="efficientformer", aliases=("EFDownsample",))
class Embedding(nn.Module):
    """Patch embedding between stages: 3×3 stride-2 conv (bias) + BN. YAML: ``[c2]``."""

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 2):
        super().__init__()
        self.proj = nn.Conv2d(c1, c2, k, s, k // 2)
        self.norm = nn.BatchNorm2d(c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x))


@register_block(family="efficientformer")
class Meta4D(nn.Module):
    """MetaFormer 4-D block: x + s1·(avgpool(x) − x); x + s2·MLP(x). YAML: ``[c2, mlp_ratio=4, pool_size=3]``."""

    def __init__(self, c1: int, c2: int, mlp_ratio: float = 4.0, pool_size: int = 3, layer_scale: float = 1e-5):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"Meta4D keeps its width: input channels {c1} != output {c2}")
        hidden = int(c1 * mlp_ratio)
        self.pool = nn.AvgPool2d(pool_size, 1, pool_size // 2, count_include_pad=False)
        self.mlp = nn.Sequential(
            nn.Conv2d(c1, hidden, 1), nn.BatchNorm2d(hidden), nn.GELU(),
            nn.Conv2d(hidden, c1, 1), nn.BatchNorm2d(c1),
        )
        self.layer_scale_1 = nn.Parameter(layer_scale * torch.ones(c1))
        self.layer_scale_2 = nn.Parameter(layer_scale * torch.ones(c1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.layer_scale_1.view(1, -1, 1, 1) * (self.pool(x) - x)
        return x + self.layer_scale_2.view(1, -1, 1, 1) * self.mlp(x)


class Attention(nn.Module):
    """EfficientFormer multi-head attention: keys/queries of ``key_dim``, values of ``attn_ratio × key_dim``."""

    def __init__(self, dim: int, key_dim: int = 32, num_heads: int = 8, attn_ratio: float = 4.0):
        super().__init__()
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.scale = key_dim ** -0.5
        self.d = int(attn_ratio * key_dim)
        self.qkv = nn.Linear(dim, num_heads * (2 * key_dim + self.d))
        self.proj = nn.Linear(num_heads * self.d, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = self.qkv(x).view(b, n, self.num_heads, -1).split([self.key_dim, self.key_dim, self.d], dim=3)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, self.num_heads * self.d))


@register_block(family="efficientformer")
class Meta3D(nn.Module):
    """MetaFormer 3-D block on flattened tokens: x + s1·Attn(LN(x)); x + s2·MLP(LN(x)).

    YAML: ``[c2, mlp_ratio=4, key_dim=32, num_heads=8]``.
    """

    def __init__(self, c1: int, c2: int, mlp_ratio: float = 4.0, key_dim: int = 32, num_heads: int = 8,
                 layer_scale: float = 1e-5):
        super().__init__()
        if c1 != c2:
            raise ValueError(f"Meta3D keeps its width: input channels {c1} != output {c2}")
        hidden = int(c1 * mlp_ratio)
        self.norm1 = nn.LayerNorm(c1)
        self.token_mixer = Attention(c1, key_dim, num_heads)
        self.norm2 = nn.LayerNorm(c1)
        self.mlp = nn.Sequential(nn.Linear(c1, hidden), nn.GELU(), nn.Linear(hidden, c1))
        self.layer_scale_1 = nn.Parameter(layer_scale * torch.ones(c1))
        self.layer_scale_2 = nn.Parameter(layer_scale * torch.ones(c1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = x.flatten(2).transpose(1, 2)
        t = t + self.layer_scale_1 * self.token_mixer(self.norm1(t))
        t = t + self.layer_scale_2 * self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape(b, c, h, w)
