"""Activation names a YAML may use, resolved without ``eval``.

YOLOv5 writes ``act=True`` for its default SiLU and ``False`` for none; the lightweight families need ReLU,
ReLU6, hard-swish and friends, so blocks also accept these names.
"""

from __future__ import annotations

from torch import nn

_ACTS: dict[str, type[nn.Module]] = {
    "silu": nn.SiLU,
    "swish": nn.SiLU,
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hardswish": nn.Hardswish,
    "hswish": nn.Hardswish,
    "hs": nn.Hardswish,
    "hardsigmoid": nn.Hardsigmoid,
    "hsigmoid": nn.Hardsigmoid,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "leakyrelu": nn.LeakyReLU,
    "identity": nn.Identity,
    "none": nn.Identity,
}

ACTIVATION_NAMES = tuple(sorted(_ACTS))


def make_act(act: bool | str | nn.Module | None = True) -> nn.Module:
    """Return an activation module: ``True`` → SiLU (YOLOv5), ``False``/``None`` → Identity, or by name."""
    if isinstance(act, nn.Module):
        return act
    if act is True:
        return nn.SiLU()
    if act is False or act is None:
        return nn.Identity()
    if isinstance(act, str):
        key = act.lower().replace("_", "").replace("-", "")
        if key in _ACTS:
            cls = _ACTS[key]
            return cls(inplace=True) if cls in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else cls()
        raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(ACTIVATION_NAMES)}")
    raise ValueError(f"activation must be a bool or a name, got {act!r}")
