"""Meta-mode shape rules: the output of heavy aten ops on ``meta`` tensors without running a meta kernel.

Some aten meta kernels are slow Python decompositions (``cat``, pooling, upsampling) and the counter calls
them once per op; these rules return exactly what the kernel would (shapes and dtypes) for convolution,
batch norm, activations, pooling, upsampling, broadcasting arithmetic, ``cat``/``stack`` and ``arange``.
:func:`shape_rules` maps each ``OpOverload`` to its rule; :func:`on_meta` says whether a call runs on meta
tensors (only then is a rule used).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from latlab.profiling.op_args import arg as _arg
from latlab.profiling.op_args import ntuple as _ntuple

ShapeRule = Callable[[Sequence[Any], dict[str, Any]], Any]


def _pool_out(size: int, k: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape``."""
    num = size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _meta(shape: Sequence[int], like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    return torch.empty(tuple(shape), device="meta", dtype=dtype or like.dtype)


def _rule_conv(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    x, w = args[0], args[1]
    stride, padding, dilation, transposed, out_pad, groups = (_arg(args, kwargs, i, n) for i, n in (
        (3, "stride"), (4, "padding"), (5, "dilation"), (6, "transposed"), (7, "output_padding"), (8, "groups")))
    nd = w.dim() - 2
    stride, padding, dilation = _ntuple(stride, nd), _ntuple(padding, nd), _ntuple(dilation, nd)
    spatial = []
    if transposed:
        out_pad = _ntuple(out_pad, nd)
        for i in range(nd):
            k = w.shape[2 + i]
            spatial.append((x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (k - 1)
                           + out_pad[i] + 1)
        c_out = w.shape[1] * groups
    else:
        for i in range(nd):
            k = w.shape[2 + i]
            spatial.append((x.shape[2 + i] + 2 * padding[i] - dilation[i] * (k - 1) - 1) // stride[i] + 1)
        c_out = w.shape[0]
    return _meta((x.shape[0], c_out, *spatial), x)


def _rule_batch_norm(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    x = args[0]
    training = bool(_arg(args, kwargs, 5, "training", False))
    n = x.shape[1] if training else 0
    stat_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return _meta(x.shape, x), _meta((n,), x, stat_dtype), _meta((n,), x, stat_dtype)


def _rule_bn_no_training(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    x = args[0]
    stat_dtype = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype
    return _meta(x.shape, x), _meta((0,), x, stat_dtype), _meta((0,), x, stat_dtype)


def _rule_unary(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    return _meta(args[0].shape, args[0])


def _rule_inplace(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    return args[0]


def _pool_spatial(args: Sequence[Any], kwargs: dict[str, Any], with_dilation: bool) -> list[int]:
    x = args[0]
    nd = x.dim() - 2
    k = _ntuple(_arg(args, kwargs, 1, "kernel_size"), nd)
    stride = _ntuple(_arg(args, kwargs, 2, "stride", []) or k, nd)
    pad = _ntuple(_arg(args, kwargs, 3, "padding", 0), nd)
    if with_dilation:
        dil = _ntuple(_arg(args, kwargs, 4, "dilation", 1), nd)
        ceil = bool(_arg(args, kwargs, 5, "ceil_mode", False))
    else:
        dil = [1] * nd
        ceil = bool(_arg(args, kwargs, 4, "ceil_mode", False))
    return [_pool_out(x.shape[2 + i], k[i], pad[i], stride[i], dil[i], ceil) for i in range(nd)]


def _rule_max_pool_idx(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    x = args[0]
    shape = (*x.shape[:2], *_pool_spatial(args, kwargs, True))
    return _meta(shape, x), _meta(shape, x, torch.int64)


def _rule_max_pool(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    x = args[0]
    return _meta((*x.shape[:2], *_pool_spatial(args, kwargs, True)), x)


def _rule_avg_pool(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    x = args[0]
    return _meta((*x.shape[:2], *_pool_spatial(args, kwargs, False)), x)


def _adaptive_shape(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[int, ...]:
    x = args[0]
    size = _ntuple(_arg(args, kwargs, 1, "output_size"), x.dim() - 2)
    spatial = [x.shape[2 + i] if s is None else s for i, s in enumerate(size)]
    return (*x.shape[:-len(spatial)], *spatial)


def _rule_adaptive_avg(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    return _meta(_adaptive_shape(args, kwargs), args[0])


def _rule_adaptive_max(args: Sequence[Any], kwargs: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    shape = _adaptive_shape(args, kwargs)
    return _meta(shape, args[0]), _meta(shape, args[0], torch.int64)


def _upsample_rule(scale_index: int) -> Callable[[Sequence[Any], dict[str, Any]], torch.Tensor]:
    """``upsample_*.vec(input, output_size?, [align_corners,] scale_factors?)``."""

    def rule(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
        x = args[0]
        nd = x.dim() - 2
        size = _arg(args, kwargs, 1, "output_size")
        if size is None:
            scales = _ntuple(_arg(args, kwargs, scale_index, "scale_factors"), nd)
            size = [math.floor(x.shape[2 + i] * scales[i]) for i in range(nd)]
        return _meta((*x.shape[:2], *size), x)

    return rule


def _rule_upsample_sized(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    """``upsample_*.default(input, output_size, ...)``: the size is always given."""
    x = args[0]
    return _meta((*x.shape[:2], *_arg(args, kwargs, 1, "output_size")), x)


def _broadcast(a: Sequence[int], b: Sequence[int]) -> list[int]:
    """NumPy broadcasting (``torch.broadcast_shapes`` imports sympy on first use, ~1 s)."""
    n = max(len(a), len(b))
    a = [1] * (n - len(a)) + list(a)
    b = [1] * (n - len(b)) + list(b)
    out = []
    for x, y in zip(a, b, strict=True):
        if x != y and x != 1 and y != 1:
            raise RuntimeError(f"shapes {a} and {b} are not broadcastable")
        out.append(y if x == 1 else x)
    return out


def _rule_binary(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    a, b = args[0], args[1]
    shape = _broadcast(a.shape, b.shape) if isinstance(b, torch.Tensor) else a.shape
    return _meta(shape, a, torch.result_type(a, b))


def _rule_true_div(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    out = _rule_binary(args, kwargs)
    if kwargs.get("rounding_mode") is None and not (out.is_floating_point() or out.is_complex()):
        return out.to(torch.get_default_dtype())
    return out


def _rule_cat(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    tensors = [t for t in args[0] if not (t.dim() == 1 and t.shape[0] == 0)] or list(args[0])
    dim = int(_arg(args, kwargs, 1, "dim", 0)) % tensors[0].dim()
    shape = list(tensors[0].shape)
    shape[dim] = sum(t.shape[dim] for t in tensors)
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return _meta(shape, tensors[0], dtype)


def _rule_stack(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
    tensors = list(args[0])
    dim = int(_arg(args, kwargs, 1, "dim", 0)) % (tensors[0].dim() + 1)
    shape = list(tensors[0].shape)
    shape.insert(dim, len(tensors))
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return _meta(shape, tensors[0], dtype)


def _arange_rule(n_positional: int) -> Callable[[Sequence[Any], dict[str, Any]], torch.Tensor]:
    def rule(args: Sequence[Any], kwargs: dict[str, Any]) -> torch.Tensor:
        start, end, step = (0, args[0], 1) if n_positional == 1 else (
            (args[0], args[1], 1) if n_positional == 2 else (args[0], args[1], args[2]))
        dtype = kwargs.get("dtype")
        if dtype is None:
            ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (start, end, step))
            dtype = torch.int64 if ints else torch.get_default_dtype()
        n = max(0, math.ceil((end - start) / step))
        return torch.empty((n,), device="meta", dtype=dtype)

    return rule


def shape_rules() -> dict[Any, ShapeRule]:
    """``OpOverload`` → shape rule, for the ops whose meta kernels the counter bypasses."""
    aten = torch.ops.aten
    rules: dict[Any, ShapeRule] = {
        aten.convolution.default: _rule_conv,
        aten.native_batch_norm.default: _rule_batch_norm,
        aten._native_batch_norm_legit_no_training.default: _rule_bn_no_training,
        aten.max_pool2d_with_indices.default: _rule_max_pool_idx,
        aten.max_pool2d.default: _rule_max_pool,
        aten.avg_pool2d.default: _rule_avg_pool,
        aten._adaptive_avg_pool2d.default: _rule_adaptive_avg,
        aten.adaptive_max_pool2d.default: _rule_adaptive_max,
        aten.upsample_nearest2d.default: _rule_upsample_sized,
        aten.upsample_nearest2d.vec: _upsample_rule(2),
        aten.upsample_bilinear2d.default: _rule_upsample_sized,
        aten.upsample_bilinear2d.vec: _upsample_rule(3),
    }
    for name, overloads in (("add", ("Tensor", "Scalar")), ("sub", ("Tensor", "Scalar")),
                            ("mul", ("Tensor", "Scalar")), ("pow", ("Tensor_Scalar",))):
        for ov in overloads:
            rules[getattr(getattr(aten, name), ov)] = _rule_binary
        for ov in ("Tensor", "Scalar"):
            rules[getattr(getattr(aten, f"{name}_"), ov)] = _rule_inplace
    for ov in ("Tensor", "Scalar"):
        rules[getattr(aten.div, ov)] = _rule_true_div
        rules[getattr(aten.div_, ov)] = _rule_inplace
    rules[aten.cat.default] = _rule_cat  # real meta kernels of these are Python decompositions
    rules[aten.stack.default] = _rule_stack
    rules[aten.arange.default] = _arange_rule(1)
    rules[aten.arange.start] = _arange_rule(2)
    rules[aten.arange.start_step] = _arange_rule(3)
    for name in ("relu", "silu", "sigmoid", "hardswish", "hardsigmoid", "gelu", "hardtanh", "leaky_relu",
                 "elu", "tanh", "mish", "softplus", "clamp"):
        packet = getattr(aten, name)
        rules[packet.default] = _rule_unary
        inplace = getattr(aten, f"{name}_", None)
        if inplace is not None:
            rules[inplace.default] = _rule_inplace
    return rules


def on_meta(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    """True when the op works on meta tensors (first tensor argument, or a factory's ``device``)."""
    if args:
        first = args[0]
        if isinstance(first, (list, tuple)) and first:
            first = first[0]
        if isinstance(first, torch.Tensor):
            return first.is_meta
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "meta"
