"""Reading the arguments of a dispatched aten op: positional-or-keyword lookup, int-or-list sizes, tensors.

Shared by the meta-mode shape rules (:mod:`latlab.profiling.shape_rules`) and the FLOP/MAC rules
(:mod:`latlab.profiling.op_rules`), and useful to custom op rules for the same reason: aten passes an
argument positionally or by name depending on the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def arg(args: Sequence[Any], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    """Argument ``i`` of the schema, whether passed positionally or as ``name=``; ``default`` if absent."""
    if i < len(args):
        return args[i]
    return kwargs.get(name, default)


def ntuple(v: Any, n: int) -> list[int]:
    """An ``int[n]`` argument as a list of ``n`` ints (a single value, or a 1-list, repeats)."""
    if isinstance(v, int):
        return [v] * n
    v = list(v)
    if not v:
        return []
    return v * n if len(v) == 1 else v


def tensors(args: Sequence[Any], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """Tensor arguments in order, including those inside list arguments (``cat``'s ``tensors``)."""
    out: list[torch.Tensor] = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def shape_str(t: torch.Tensor) -> str:
    """``"1x3x640x640"`` (``"scalar"`` for a 0-d tensor), the format of the count table's shape columns."""
    return "x".join(map(str, t.shape)) if t.dim() else "scalar"
