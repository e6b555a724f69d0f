"""Activation names a YAML may use, resolved without ``eval``.

YOLOv5 writes ``act=True`` for its default SiLU and ``False`` for none; the lightweight families need ReLU,
ReLU6, hard-swish and friends, so blocks also accept these names.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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
# What ``act=True`` builds: SiLU, unless a model YAML's top-level ``activation`` key says otherwise
# (YOLOv5's ``Conv.default_act``), set only while that model is built (:func:`default_activation`).
_DEFAULT_ACT: ContextVar[str] = ContextVar("latlab_default_act", default="silu")
_TORCH_SPELLING = re.compile(r"^(?:torch\.)?(?:nn\.)?([A-Za-z][A-Za-z0-9_]*)(?:\(\s*\))?$")


def activation_name(spec: object) -> str:
    """The registry name of an activation spelled as a name (``relu``) or YOLOv5's ``nn.ReLU()``; a call
    with arguments or an unknown name raises ``ValueError`` (nothing is evaluated)."""
    m = _TORCH_SPELLING.match(spec.strip()) if isinstance(spec, str) else None
    key = m.group(1).lower().replace("_", "") if m else None
    if key not in _ACTS:
        raise ValueError(f"expected an activation such as nn.ReLU() or relu (one of {', '.join(ACTIVATION_NAMES)},"
                         f" without arguments), got {spec!r}")
    return key


@contextmanager
def default_activation(name: str) -> Iterator[None]:
    """Within the block, ``act=True`` builds ``name`` instead of SiLU (YOLOv5's ``activation:`` key)."""
    token = _DEFAULT_ACT.set(activation_name(name))
    try:
        yield
    finally:
        _DEFAULT_ACT.reset(token)


def make_act(act: bool | str | nn.Module | None = True) -> nn.Module:
    """Return an activation module: ``True`` → SiLU (YOLOv5; see :func:`default_activation`),
    ``False``/``None`` → Identity, or by name."""
    if isinstance(act, nn.Module):
        return act
    if act is True:
        default = _DEFAULT_ACT.get()
        return nn.SiLU() if default == "silu" else make_act(default)
    if act is False or act is None:
        return nn.Identity()
    if isinstance(act, str):
        key = act.lower().replace("_", "").replace("-", "")
        if key in _ACTS:
            cls = _ACTS[key]
            return cls(inplace=True) if cls in (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish) else cls()
        raise ValueError(f"unknown activation {act!r}; expected one of {', '.join(ACTIVATION_NAMES)}")
    raise ValueError(f"activation must be a bool or a name, got {act!r}")
