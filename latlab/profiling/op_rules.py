"""FLOP/MAC rules: one small handler per op, keyed by the op's overload packet (``"aten::convolution"``).

The counter (:mod:`latlab.profiling.counter`) asks this table what one dispatched call costs. A rule gets
``(args, kwargs, inputs, outputs)`` (the call's arguments, its tensor inputs and tensor outputs) and returns
an :class:`OpCost`. Users add rules for their own ops with :func:`register_op_rule` (like fvcore's
``set_op_handle`` or thop's ``custom_ops``); the built-in rules below are registered the same way.

Lookup for a call of ``ns::name`` (``ns::name_`` in-place): the rule of ``ns::name_``, else of ``ns::name``
(an in-place variant shares its op's rule), else of ``aten::name`` (an op of another namespace is costed like
the aten op of the same name, as its category is). An op without a rule costs 0 madds and 0 FLOPs; its
``mac_bytes`` (distinct inputs read + outputs written) and category (:mod:`latlab.profiling.categories`)
are still recorded. Views and aliases move no bytes and are never looked up.

Built-in formulas (``n_out`` = output elements, ``n_in`` = first input's elements, ``K`` = kernel elements):

- convolution: madds = ``n_out · (C_in/groups) · K`` (transposed: ``n_in · (C_out/groups) · K``);
  flops = ``2·madds + n_out`` when there is a bias.
- mm/addmm/bmm/baddbmm/matmul/linear: madds = ``n_out · k`` (``k`` = contracted size); flops = ``2·madds``
  (+ ``n_out`` for the bias of ``addmm``/``baddbmm``/``linear``).
- batch norm: ``2·n_out`` in inference (statistics folded into one scale and one shift per element),
  ``4·n_out`` when batch statistics are computed; layer/group norm: ``5·n_out`` (``4·n_out`` without affine).
- element-wise: ``c · n_out`` with ``c`` from :data:`ELEMENTWISE_FLOPS` (textbook arithmetic count; exp, log,
  erf, tanh count 1): add/mul/relu 1, clamp/hardtanh/leaky_relu 2, sigmoid 4, silu 5, hardsigmoid 4,
  hardswish 5, gelu 5, mish 5; unlisted element-wise ops 1.
- max pooling: ``n_out · (K − 1)`` comparisons; average pooling: ``n_out · K``; adaptive average pooling
  and a spatial ``mean``: ``n_in`` (adds plus one divide per output); adaptive max: ``n_in − n_out``.
- upsample: nearest 0 (pure copy); linear 2, bilinear 4, bicubic 16, trilinear 8 per output element.
- sum/amax/prod-style reductions: ``n_in``; softmax/log_softmax: ``3·n_out``.
- views, copies, concatenation, padding, factories: 0 (no rule).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from latlab.errors import ConfigError
from latlab.profiling.categories import CATEGORIES, base_name, category_ops, conv_category, op_category
from latlab.profiling.op_args import arg, ntuple


@dataclass(frozen=True, slots=True)
class OpCost:
    """What one call of an op adds to the count.

    ``category`` ``None`` keeps the op's category from :func:`latlab.profiling.categories.op_category`;
    ``mac_bytes`` ``None`` keeps the default (every distinct tensor input read plus every output written).
    """

    madds: int = 0
    flops: int = 0
    category: str | None = None
    mac_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.category is not None and self.category not in CATEGORIES:
            raise ConfigError(f"op rule returned unknown category {self.category!r}: "
                              f"expected one of {', '.join(CATEGORIES)}")


OpRule = Callable[[Sequence[Any], dict[str, Any], list[torch.Tensor], list[torch.Tensor]], OpCost]
"""``rule(args, kwargs, inputs, outputs) -> OpCost`` for one dispatched call."""

OpName = str | torch._ops.OpOverloadPacket

_RULES: dict[str, OpRule] = {}
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*::[A-Za-z_][A-Za-z0-9_]*$")


def op_key(op: OpName) -> str:
    """The registry key of ``op``: ``"namespace::name"`` from a string or ``torch.ops.<ns>.<name>``."""
    if isinstance(op, torch._ops.OpOverloadPacket):
        return op._qualified_op_name
    if isinstance(op, torch._ops.OpOverload):
        raise ConfigError(f"op rules are per overload packet: pass {op._overloadpacket._qualified_op_name!r} "
                          f"or torch.ops.{op.namespace}.{op._overloadpacket.__name__}, not the overload {op}")
    if not isinstance(op, str) or not _NAME.match(op):
        raise ConfigError(f"op name {op!r} is not 'namespace::name' (e.g. 'aten::convolution', 'mylib::myop')")
    return op


def register_op_rule(op: OpName, rule: OpRule | None = None, *, override: bool = False) -> Any:
    """Register ``rule`` as the FLOP/MAC rule of ``op`` (``"namespace::name"`` or ``torch.ops.ns.name``).

    Without ``rule`` it returns a decorator. A second rule for the same op is an error unless
    ``override=True`` (the built-in aten rules are registered through this function too, so overriding one
    changes every later count). See :func:`op_rule_scope` to register for a block of code only.

    Example: a ``torch.library`` custom op computing ``x + alpha * y`` costs one multiply and one add per
    output element::

        import torch
        from latlab.profiling import OpCost, register_op_rule

        @torch.library.custom_op("latlab_demo::scaled_add", mutates_args=())
        def scaled_add(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
            return x + alpha * y

        @scaled_add.register_fake  # output shape for meta-tensor counting
        def _(x, y, alpha):
            return torch.empty_like(x)

        @register_op_rule("latlab_demo::scaled_add")
        def scaled_add_rule(args, kwargs, inputs, outputs):
            n = outputs[0].numel()
            return OpCost(madds=n, flops=2 * n, category="elementwise")

    Without the rule the op is still counted (params, ``mac_bytes``, shapes; category ``other``) with 0 FLOPs.
    """
    key = op_key(op)
    if rule is None:
        return lambda fn: register_op_rule(key, fn, override=override)
    if not callable(rule):
        raise ConfigError(f"op rule for {key} must be callable (args, kwargs, inputs, outputs) -> OpCost")
    if key in _RULES and not override:
        raise ConfigError(f"{key} already has an op rule ({_RULES[key].__qualname__}); "
                          "pass override=True to replace it")
    _RULES[key] = rule
    return rule


def unregister_op_rule(op: OpName) -> OpRule:
    """Remove the rule of ``op`` and return it; an op without a rule is an error."""
    key = op_key(op)
    if key not in _RULES:
        raise ConfigError(f"{key} has no op rule to unregister")
    return _RULES.pop(key)


def get_op_rule(op: OpName) -> OpRule | None:
    """The rule registered for exactly ``op`` (no in-place or aten fallback), or ``None``."""
    return _RULES.get(op_key(op))


def registered_ops() -> list[str]:
    """Keys of every registered rule, sorted."""
    return sorted(_RULES)


@contextlib.contextmanager
def op_rule_scope(op: OpName, rule: OpRule) -> Iterator[OpRule]:
    """Use ``rule`` for ``op`` inside the ``with`` block; the previous rule (or none) is back afterwards."""
    key = op_key(op)
    previous = _RULES.get(key)
    register_op_rule(key, rule, override=True)
    try:
        yield rule
    finally:
        if previous is None:
            _RULES.pop(key, None)
        else:
            _RULES[key] = previous


def find_op_rule(func: torch._ops.OpOverload) -> OpRule | None:
    """The rule for a dispatched overload: ``ns::name``, else ``ns::<base name>``, else ``aten::<base name>``."""
    name = func._overloadpacket.__name__
    base = base_name(name)
    for key in (f"{func.namespace}::{name}", f"{func.namespace}::{base}", f"aten::{base}"):
        rule = _RULES.get(key)
        if rule is not None:
            return rule
    return None


# ------------------------------------------------------------------------------------- built-in rules
ELEMENTWISE_FLOPS: dict[str, int] = {
    "clamp": 2, "hardtanh": 2, "relu6": 2, "leaky_relu": 2, "sigmoid": 4, "silu": 5, "hardsigmoid": 4,
    "hardswish": 5, "gelu": 5, "mish": 5, "elu": 4, "selu": 5, "celu": 5, "softplus": 3, "logsigmoid": 4,
    "log_sigmoid_forward": 4, "addcmul": 2, "addcdiv": 2, "lerp": 3, "prelu": 2, "_prelu_kernel": 2,
}
UPSAMPLE_FLOPS: dict[str, int] = {"upsample_linear1d": 2, "upsample_bilinear2d": 4, "_upsample_bilinear2d_aa": 4,
                                  "upsample_bicubic2d": 16, "upsample_trilinear3d": 8}
REDUCTIONS = frozenset({"sum", "amax", "amin", "max", "min", "prod", "var", "std", "norm", "linalg_vector_norm",
                        "logsumexp", "argmax", "argmin", "any", "all"})
SOFTMAX = frozenset({"_softmax", "softmax", "_log_softmax", "log_softmax"})
_MATMUL_SECOND_ARG = frozenset({"addmm", "baddbmm", "addmv", "_addmm_activation"})
_BIASED_MATMUL = frozenset({"addmm", "baddbmm", "addmv", "_addmm_activation"})


def _n_out(outs: list[torch.Tensor]) -> int:
    return outs[0].numel() if outs else 0


def _conv(args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor], outs: list[torch.Tensor]) -> OpCost:
    x, w = args[0], args[1]
    n_out = _n_out(outs)
    bias = arg(args, kwargs, 2, "bias")
    transposed = bool(arg(args, kwargs, 6, "transposed", False))
    groups = int(arg(args, kwargs, 8, "groups", 1) or 1)
    k = math.prod(w.shape[2:])
    madds = (x.numel() if transposed else n_out) * w.shape[1] * k
    return OpCost(madds, 2 * madds + (n_out if bias is not None else 0),
                  conv_category(x.shape[1], groups, k, transposed=transposed))


def _mean(args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor], outs: list[torch.Tensor]) -> OpCost:
    """A mean over the spatial dims is pooling, otherwise a reduction; ``n_in`` either way."""
    dims = arg(args, kwargs, 1, "dim")
    x = args[0]
    dims = list(range(x.dim())) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
    return OpCost(0, x.numel(), op_category("mean", reduce_dims=dims, ndim=x.dim()))


def _linear(base: str) -> OpRule:
    second = base in _MATMUL_SECOND_ARG

    def rule(args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor],
             outs: list[torch.Tensor]) -> OpCost:
        n_out = _n_out(outs)
        a = args[1] if second else args[0]
        madds = a.numel() if base == "dot" else n_out * a.shape[-1]
        biased = base in _BIASED_MATMUL or (base == "linear" and arg(args, kwargs, 2, "bias") is not None)
        return OpCost(madds, 2 * madds + (n_out if biased else 0))

    return rule


def _per_output(c: int) -> OpRule:
    """``c`` FLOPs per output element (element-wise ops, upsampling, softmax)."""

    def rule(args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor],
             outs: list[torch.Tensor]) -> OpCost:
        return OpCost(0, c * _n_out(outs))

    return rule


def _norm(base: str) -> OpRule:
    batch_norm, no_training = "batch_norm" in base, "no_training" in base

    def rule(args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor],
             outs: list[torch.Tensor]) -> OpCost:
        n_out = _n_out(outs)
        if batch_norm:
            training = not no_training and bool(arg(args, kwargs, 5, "training", False))
            return OpCost(0, (4 if training else 2) * n_out)
        return OpCost(0, (5 if len(ins) > 1 else 4) * n_out)

    return rule


def _pooling(base: str) -> OpRule:
    def rule(args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor],
             outs: list[torch.Tensor]) -> OpCost:
        x, n_out = args[0], _n_out(outs)
        if "adaptive_avg" in base:
            return OpCost(0, x.numel())
        if "adaptive_max" in base:
            return OpCost(0, x.numel() - n_out)
        k = math.prod(ntuple(arg(args, kwargs, 1, "kernel_size"), x.dim() - 2))
        return OpCost(0, n_out * (k - 1) if "max" in base else n_out * k)

    return rule


def _reduction(args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor],
               outs: list[torch.Tensor]) -> OpCost:
    return OpCost(0, ins[0].numel() if ins else 0)


def _register_builtins() -> None:
    """The formulas of the module docstring, registered through :func:`register_op_rule`."""
    for name in category_ops("conv"):
        register_op_rule(f"aten::{name}", _conv)
    register_op_rule("aten::mean", _mean)
    for name in category_ops("linear"):
        register_op_rule(f"aten::{name}", _linear(name))
    for name in category_ops("elementwise"):
        register_op_rule(f"aten::{name}", _per_output(ELEMENTWISE_FLOPS.get(name, 1)))
    for name in category_ops("norm"):
        register_op_rule(f"aten::{name}", _norm(name))
    for name in category_ops("pooling"):
        register_op_rule(f"aten::{name}", _pooling(name))
    for name, c in UPSAMPLE_FLOPS.items():
        register_op_rule(f"aten::{name}", _per_output(c))
    for name in SOFTMAX:
        register_op_rule(f"aten::{name}", _per_output(3))
    for name in REDUCTIONS:
        register_op_rule(f"aten::{name}", _reduction)


_register_builtins()
