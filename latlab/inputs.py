"""The example input every job feeds a model: one ``batch×channels×imgsz×imgsz`` float tensor.

Latency does not depend on the values, but reproducibility does, so each caller says which it uses:
zeros (the default), a seeded ``randn`` (its own generator: the global RNG is not touched) or a ``randn``
from the global RNG (``fill="randn"`` without a seed).
"""

from __future__ import annotations

import torch

from latlab.errors import ConfigError

FILLS = ("zeros", "randn")


def example_input(imgsz: int, batch: int = 1, channels: int = 3, *, seed: int | None = None,
                  fill: str | None = None) -> torch.Tensor:
    """A ``batch×channels×imgsz×imgsz`` float32 tensor.

    ``fill`` is ``"zeros"`` or ``"randn"``; by default zeros, or ``randn`` when ``seed`` is given. A seeded
    ``randn`` draws from ``torch.Generator().manual_seed(seed)``; an unseeded one from the global RNG.
    """
    kind = fill if fill is not None else ("zeros" if seed is None else "randn")
    if kind not in FILLS:
        raise ConfigError(f"unknown fill {kind!r}; known: {', '.join(FILLS)}")
    if kind == "zeros" and seed is not None:
        raise ConfigError("a seed only applies to fill='randn'")
    shape = (batch, channels, imgsz, imgsz)
    if kind == "zeros":
        return torch.zeros(shape)
    if seed is None:
        return torch.randn(shape)
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))
