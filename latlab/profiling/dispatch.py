"""The dispatch modes: a ``TorchDispatchMode`` base that skips dynamo, and the mode that records op rows.

:class:`CountingMode` sees every aten op the forward pass dispatches (module or functional code alike) and
appends one row per call: the innermost module on the caller's stack, params read for the first time,
``mac_bytes``, the op's FLOP rule result (:mod:`latlab.profiling.op_rules`) and shapes. In ``fast`` (meta)
mode it answers heavy ops' output shapes with :mod:`latlab.profiling.shape_rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from latlab.errors import ConfigError
from latlab.profiling.categories import base_name, is_conv_op, op_category
from latlab.profiling.op_args import shape_str, tensors
from latlab.profiling.op_rules import OpCost, OpRule, find_op_rule
from latlab.profiling.shape_rules import on_meta, shape_rules

FREE_OPS = frozenset({"_unsafe_view", "alias", "detach", "lift_fresh"})
"""Ops that move no bytes besides those torch marks as views."""
NO_WRITE_OPS = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})
"""Factories that allocate without writing: their output is not counted in ``mac_bytes``."""


class EagerDispatchMode(TorchDispatchMode):
    """A dispatch mode that never runs under torch.compile: skipping the dynamo-disable wrapper avoids
    importing torch._dynamo on first use (~1-2 s) and one wrapper call per op."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


@dataclass
class Frame:
    """A module on the call stack: its dotted path and YAML layer (``-1`` outside ``layers``)."""

    path: str
    layer: int


@dataclass(frozen=True)
class OpInfo:
    """What the counter caches per ``OpOverload``."""

    name: str
    base: str
    free: bool  # a view or alias: no bytes move
    category: str | None  # None: decided per call (convolution geometry, mean over which dims)
    rule: OpRule | None


def op_info(func: Any) -> OpInfo:
    """Name, base name, view-ness, static category and FLOP rule of a dispatched overload."""
    name = func._overloadpacket.__name__
    base = base_name(name)
    free = bool(getattr(func, "is_view", False)) or base in FREE_OPS
    category = None if (is_conv_op(base) or base == "mean") else op_category(base)
    return OpInfo(name, base, free, category, None if free else find_op_rule(func))


_NO_COST = OpCost()


class CountingMode(EagerDispatchMode):
    """Records one row per dispatched op; in ``fast`` mode answers heavy ops' output shapes itself."""

    def __init__(self, stack: list[Frame], param_of: dict[int, tuple[int, int, torch.Tensor]], fast: bool):
        super().__init__()
        self.stack = stack
        self.param_of = param_of  # id(param or a view of it) -> (param key, param numel, tensor kept alive)
        self.counted: set[int] = set()
        self.rows: list[tuple[Any, ...]] = []
        self.rules = shape_rules() if fast else {}
        self.infos: dict[Any, OpInfo] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        rule = self.rules.get(func)
        use_rule = rule is not None and on_meta(args, kwargs)
        out = rule(args, kwargs) if use_rule else func(*args, **kwargs)
        info = self.infos.get(func)
        if info is None:
            info = self.infos[func] = op_info(func)
        self._record(info, args, kwargs, out)
        return out

    def _record(self, info: OpInfo, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        ins = tensors(args, kwargs)
        outs = [out] if isinstance(out, torch.Tensor) else (
            [o for o in out if isinstance(o, torch.Tensor)] if isinstance(out, (tuple, list)) else [])
        params = 0
        param_of = self.param_of
        if info.free:
            for t in ins:
                entry = param_of.get(id(t))
                if entry is not None:
                    for o in outs:
                        param_of[id(o)] = (entry[0], entry[1], o)
            madds = flops = mac = 0
            category = info.category or "data_movement"
        else:
            seen: set[int] = set()
            mac = 0
            for t in ins:
                key = id(t)
                if key in seen:
                    continue
                seen.add(key)
                entry = param_of.get(key)
                if entry is not None and entry[0] not in self.counted:
                    self.counted.add(entry[0])
                    params += entry[1]
                mac += t.numel() * t.element_size()
            base = info.base
            if base == "copy_" and ins:  # reads src, writes self: not a read of self
                mac -= ins[0].numel() * ins[0].element_size()
            if base not in NO_WRITE_OPS:
                mac += sum(o.numel() * o.element_size() for o in outs)
            cost = _NO_COST if info.rule is None else info.rule(args, kwargs, ins, outs)
            if not isinstance(cost, OpCost):
                raise ConfigError(f"the op rule of {info.name} returned {type(cost).__name__}, expected OpCost")
            madds, flops = cost.madds, cost.flops
            category = cost.category or info.category or op_category(base)
            if cost.mac_bytes is not None:
                mac = cost.mac_bytes
        act = 0 if info.free else (outs[0].numel() if outs else 0)
        frame = self.stack[-1]
        self.rows.append((frame.layer, frame.path, info.name, category, params, madds, flops, mac, act,
                          "; ".join(shape_str(t) for t in ins), "; ".join(shape_str(o) for o in outs)))
