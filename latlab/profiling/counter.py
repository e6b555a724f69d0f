"""Per-operator counts of a model: params, multiply-adds, FLOPs, memory access bytes, activations.

The counter is a ``TorchDispatchMode`` (the mechanism behind ``torch.utils.flop_counter.FlopCounterMode``):
every aten op the forward pass dispatches is seen, whether it came from an ``nn.Module`` or from functional
code (``F.conv2d``, ``torch.matmul``, ``x.chunk``, ``torch.cat``, ``F.interpolate``, a channel shuffle's
``view``/``transpose``/``contiguous``). Every op is listed, zero-FLOP ops included.

Attribution: forward pre/post hooks registered globally for the duration of the count (and removed after)
keep a module stack, so each op is charged to the innermost module that issued it, and to its YAML layer
(module path ``layers.<i>…`` → layer ``i``; ``-1`` for ops outside ``layers``). The model is left as it
was: the counter adds no hooks, buffers or attributes, puts the original parameter and buffer objects back,
and restores every ``training`` flag (counting runs in eval mode, i.e. the deployed graph). A forward that
caches tensors in plain attributes would cache meta tensors in meta mode (YOLOv5's ``Detect`` grid cache
does this; latlab's ``Detect`` rebuilds its grid every call), so count such models with ``meta=False``.

Meta mode (default) swaps parameters and buffers for ``meta`` tensors for the duration of the call (no real
compute, no copy of the model) and answers the output shapes of the heavy ops (convolution, batch norm,
activations, pooling, upsampling) with its own shape formulas instead of calling their meta kernels, some of
which are slow Python decompositions. ``meta=False`` runs real tensors, for models with data-dependent code.

Columns of :attr:`CountResult.ops` (one row per dispatched aten op, in execution order):

===============  ==========================================================================================
``layer``        YAML layer index (``layers.<i>``), ``-1`` for ops outside ``layers`` or non-layer models
``module``       dotted path of the innermost module that issued the op (``""`` = the root's own code)
``op``           aten op name without namespace/overload (``convolution``, ``native_batch_norm``, ``relu_``)
``category``     see :mod:`latlab.profiling.categories` (conv, pointwise, depthwise, group_conv, linear, …)
``params``       parameters read by this op the first time any op reads them (so rows sum to the model's
                 ``sum(p.numel())``); views of a weight (``t``) pass it on to the op that consumes the view;
                 parameters no op reads get one row with op ``(unused)``
``madds``        multiply-adds (convolution and matrix products only, bias excluded)
``flops``        ``2·madds`` + bias adds + element-wise/normalisation/activation/pooling work (table below)
``mac_bytes``    bytes read + written: every distinct tensor input (activations, weights, BN statistics)
                 plus every tensor output the kernel writes (e.g. the int64 indices of
                 ``max_pool2d_with_indices``), each ``numel × element size``; free views cost 0
``act_elems``    elements of the op's (first) output; 0 for free views, which create no new activation
``in_shapes``    tensor input shapes, ``"1x3x640x640; 32x3x6x6"`` (``scalar`` for 0-d tensors)
``out_shape``    output shape(s), same format
===============  ==========================================================================================

FLOP formulas (``n_out`` = output elements, ``n_in`` = first input's elements, ``K`` = kernel elements):

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
- views, copies, concatenation, padding, factories: 0.

:attr:`CountResult.yolo_gflops` is YOLOv5's printed "GFLOPs": ``2 ×`` the total of MIT ``thop`` 0.1.1's
module rules (conv ``n_out·(C_in/groups)·K`` without bias, affine BatchNorm/LayerNorm ``4·n_in``, Linear
``in_features·n_out``, nearest Upsample ``n_out``, AvgPool ``n_out``, AdaptiveAvgPool ``(K+1)·n_out``,
ReLU/SiLU/MaxPool 0), applied, as thop does, only to modules whose exact type thop registers. Functional ops
(``F.conv2d``) are invisible to that convention; ``madds``/``flops`` see them. For detectors it follows
YOLOv5's ``model_info`` to the letter: thop on a stride-sized ``s × s`` input (``s = max(max stride, 32)``),
scaled by ``(H/s)·(W/s)``. That equals ``2 ×`` thop at ``H × W`` when every layer's cost scales with the image
area (plain YOLOv5), and overstates it when some do not (SE blocks on 1×1 maps, global pooling);
:attr:`CountResult.thop_by_type` always holds thop's rules at the counted input itself.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook
from torch.utils._python_dispatch import TorchDispatchMode

from latlab.errors import ConfigError
from latlab.ops.model import check_imgsz, max_stride
from latlab.profiling.categories import CATEGORIES, base_name, conv_category, is_conv_op, op_category

COLUMNS: tuple[str, ...] = ("layer", "module", "op", "category", "params", "madds", "flops", "mac_bytes",
                            "act_elems", "in_shapes", "out_shape")
SUM_COLUMNS: tuple[str, ...] = ("params", "madds", "flops", "mac_bytes", "act_elems")

ELEMENTWISE_FLOPS: dict[str, int] = {
    "clamp": 2, "hardtanh": 2, "relu6": 2, "leaky_relu": 2, "sigmoid": 4, "silu": 5, "hardsigmoid": 4,
    "hardswish": 5, "gelu": 5, "mish": 5, "elu": 4, "selu": 5, "celu": 5, "softplus": 3, "logsigmoid": 4,
    "log_sigmoid_forward": 4, "addcmul": 2, "addcdiv": 2, "lerp": 3, "prelu": 2, "_prelu_kernel": 2,
}
_UPSAMPLE_FLOPS = {"upsample_linear1d": 2, "upsample_bilinear2d": 4, "_upsample_bilinear2d_aa": 4,
                   "upsample_bicubic2d": 16, "upsample_trilinear3d": 8}
_REDUCTIONS = frozenset({"sum", "amax", "amin", "max", "min", "prod", "mean", "var", "std", "norm",
                         "linalg_vector_norm", "logsumexp", "argmax", "argmin", "any", "all"})
_SOFTMAX = frozenset({"_softmax", "softmax", "_log_softmax", "log_softmax"})
_FREE = frozenset({"_unsafe_view", "alias", "detach", "lift_fresh"})
_NO_WRITE = frozenset({"empty", "empty_like", "empty_strided", "new_empty", "new_empty_strided"})
_MATMUL_SECOND_ARG = frozenset({"addmm", "baddbmm", "addmv", "_addmm_activation"})
_BIASED_MATMUL = frozenset({"addmm", "baddbmm", "addmv", "_addmm_activation"})


# ----------------------------------------------------------------------------------------- results
@dataclass(eq=False)
class CountResult:
    """Per-op counts of one forward pass. ``ops`` has the columns documented in the module docstring.

    ``yolo_gflops`` is YOLOv5's printed GFLOPs (see the module docstring; ``yolo_probe`` is the stride-sized
    input side it is scaled from, ``None`` when counted at the input itself) and ``thop_by_type`` thop's
    total at the counted input per module class name. For a detector counted at another size the probe pass
    runs on first access of ``yolo_gflops`` (the result holds the model until then), so counts that never
    read it do not pay for a second forward.
    """

    ops: pd.DataFrame
    input_shape: tuple[int, ...]
    dtype: str
    meta: bool
    blocks: dict[str, str] = field(default_factory=dict)
    thop_by_type: dict[str, float] = field(default_factory=dict)
    yolo_probe: int | None = None
    _yolo_gflops: float | None = field(default=None, repr=False)
    _probe: Callable[[], float] | None = field(default=None, repr=False)

    @property
    def yolo_gflops(self) -> float:
        """YOLOv5's printed GFLOPs for this input (2 × thop's rules, stride-probe scaled for detectors)."""
        if self._yolo_gflops is None:
            probe, self._probe = self._probe, None
            self._yolo_gflops = probe() if probe is not None else 2.0 * sum(self.thop_by_type.values()) / 1e9
        return self._yolo_gflops

    @property
    def totals(self) -> dict[str, int]:
        """Sums of ``params``, ``madds``, ``flops``, ``mac_bytes``, ``act_elems`` over all rows."""
        return {c: int(self.ops[c].sum()) for c in SUM_COLUMNS}

    def _grouped(self, keys: list[str], frame: pd.DataFrame | None = None) -> pd.DataFrame:
        df = self.ops if frame is None else frame
        out = df.groupby(keys, sort=False, dropna=False)[list(SUM_COLUMNS)].sum()
        out["n_ops"] = df.groupby(keys, sort=False, dropna=False).size()
        return out.reset_index()

    def by_layer(self) -> pd.DataFrame:
        """One row per YAML layer (or top-level child): ``layer``, ``name``, ``type``, the sums, ``n_ops``.

        ``name`` is ``layers.<i>`` for layer models, the top-level child name otherwise, ``""`` for the root's
        own code; ``type`` is that module's class name.
        """
        frame = self.ops.assign(name=[_top_name(m) for m in self.ops["module"]])
        out = self._grouped(["layer", "name"], frame)
        out.insert(2, "type", [self.blocks.get(n, "") for n in out["name"]])
        if (out["layer"] >= 0).any():
            out = out.sort_values("layer", kind="stable").reset_index(drop=True)
        return out

    def by_module(self, depth: int | None = None) -> pd.DataFrame:
        """Sums per module path, truncated to ``depth`` dotted components when given."""
        frame = self.ops
        if depth is not None:
            frame = frame.assign(module=[".".join(m.split(".")[:depth]) for m in frame["module"]])
        return self._grouped(["module"], frame)

    def by_category(self) -> pd.DataFrame:
        """Sums per category (in :data:`CATEGORIES` order) with ``flops_pct`` and ``mac_bytes_pct`` shares."""
        out = self._grouped(["category"])
        order = {c: i for i, c in enumerate(CATEGORIES)}
        out = out.sort_values("category", key=lambda s: s.map(order)).reset_index(drop=True)
        for col in ("flops", "mac_bytes"):
            total = out[col].sum()
            out[f"{col}_pct"] = 100.0 * out[col] / total if total else 0.0
        return out

    def by_op(self) -> pd.DataFrame:
        """Sums per (op, category), most FLOPs first; ``n_ops`` is the number of calls."""
        out = self._grouped(["op", "category"])
        return out.sort_values(["flops", "mac_bytes"], ascending=False, kind="stable").reset_index(drop=True)


def _top_name(path: str) -> str:
    parts = path.split(".")
    if parts[0] == "layers" and len(parts) > 1:
        return f"layers.{parts[1]}"
    return parts[0]


# ----------------------------------------------------------------------------------------- helpers
def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) if t.dim() else "scalar"


def _tensors(args: Sequence[Any], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    out: list[torch.Tensor] = []
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out.extend(x for x in a if isinstance(x, torch.Tensor))
    return out


def _arg(args: Sequence[Any], kwargs: dict[str, Any], i: int, name: str, default: Any = None) -> Any:
    if i < len(args):
        return args[i]
    return kwargs.get(name, default)


def _ntuple(v: Any, n: int) -> list[int]:
    if isinstance(v, int):
        return [v] * n
    v = list(v)
    if not v:
        return []
    return v * n if len(v) == 1 else v


def _pool_out(size: int, k: int, pad: int, stride: int, dilation: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape``."""
    num = size + 2 * pad - dilation * (k - 1) - 1 + (stride - 1 if ceil_mode else 0)
    out = num // stride + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


# ------------------------------------------------------------------ shape rules for meta mode
# Each rule returns exactly what the kernel would (shapes and dtypes) without running a meta kernel.
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


def _shape_rules() -> dict[Any, Callable[..., Any]]:
    aten = torch.ops.aten
    rules: dict[Any, Callable[..., Any]] = {
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


def _on_meta(args: Sequence[Any], kwargs: dict[str, Any]) -> bool:
    """True when the op works on meta tensors (first tensor argument, or a factory's ``device``)."""
    if args:
        first = args[0]
        if isinstance(first, (list, tuple)) and first:
            first = first[0]
        if isinstance(first, torch.Tensor):
            return first.is_meta
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "meta"


# ------------------------------------------------------------------------------- per-op formulas
@dataclass(frozen=True)
class _OpInfo:
    name: str
    base: str
    free: bool  # a view or alias: no bytes move
    category: str | None  # None: decided per call (convolution geometry, mean over which dims)


def _numel(outs: list[torch.Tensor]) -> int:
    return outs[0].numel() if outs else 0


def _formula(info: _OpInfo, args: Sequence[Any], kwargs: dict[str, Any], ins: list[torch.Tensor],
             outs: list[torch.Tensor]) -> tuple[int, int, str]:
    """Return ``(madds, flops, category)`` of one call."""
    base = info.base
    n_out = _numel(outs)
    if info.category is None and is_conv_op(base):
        x, w = args[0], args[1]
        bias = _arg(args, kwargs, 2, "bias")
        transposed = bool(_arg(args, kwargs, 6, "transposed", False))
        groups = int(_arg(args, kwargs, 8, "groups", 1) or 1)
        k = math.prod(w.shape[2:])
        madds = (x.numel() if transposed else n_out) * w.shape[1] * k
        flops = 2 * madds + (n_out if bias is not None else 0)
        return madds, flops, conv_category(x.shape[1], groups, k, transposed=transposed)
    if info.category is None:  # mean: pooling over spatial dims, otherwise a reduction
        dims = _arg(args, kwargs, 1, "dim")
        x = args[0]
        dims = list(range(x.dim())) if dims is None else ([dims] if isinstance(dims, int) else list(dims))
        return 0, x.numel(), op_category(base, reduce_dims=dims, ndim=x.dim())
    cat = info.category
    if cat == "linear":
        a = args[1] if base in _MATMUL_SECOND_ARG else args[0]
        madds = a.numel() if base == "dot" else n_out * a.shape[-1]
        biased = base in _BIASED_MATMUL or (base == "linear" and _arg(args, kwargs, 2, "bias") is not None)
        return madds, 2 * madds + (n_out if biased else 0), cat
    if cat == "elementwise":
        return 0, ELEMENTWISE_FLOPS.get(base, 1) * n_out, cat
    if cat == "norm":
        if "batch_norm" in base:
            training = "no_training" not in base and bool(_arg(args, kwargs, 5, "training", False))
            return 0, (4 if training else 2) * n_out, cat
        affine = len(ins) > 1
        return 0, (5 if affine else 4) * n_out, cat
    if cat == "pooling":
        x = args[0]
        if "adaptive_avg" in base:
            return 0, x.numel(), cat
        if "adaptive_max" in base:
            return 0, x.numel() - n_out, cat
        k = math.prod(_ntuple(_arg(args, kwargs, 1, "kernel_size"), x.dim() - 2))
        return 0, (n_out * (k - 1) if "max" in base else n_out * k), cat
    if cat == "data_movement":
        return 0, _UPSAMPLE_FLOPS.get(base, 0) * n_out, cat
    if base in _SOFTMAX:
        return 0, 3 * n_out, cat
    if base in _REDUCTIONS and ins:
        return 0, ins[0].numel(), cat
    return 0, 0, cat


def _op_info(func: Any) -> _OpInfo:
    name = func._overloadpacket.__name__
    base = base_name(name)
    free = bool(getattr(func, "is_view", False)) or base in _FREE
    category = None if (is_conv_op(base) or base == "mean") else op_category(base)
    return _OpInfo(name, base, free, category)


# ------------------------------------------------------------------------------------- the mode
@dataclass
class _Frame:
    path: str
    layer: int


class EagerDispatchMode(TorchDispatchMode):
    """A dispatch mode that never runs under torch.compile: skipping the dynamo-disable wrapper avoids
    importing torch._dynamo on first use (~1-2 s) and one wrapper call per op."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        return False


class _CountingMode(EagerDispatchMode):
    """Records one row per dispatched op; in ``fast`` mode answers heavy ops' output shapes itself."""

    def __init__(self, stack: list[_Frame], param_of: dict[int, tuple[int, int, torch.Tensor]], fast: bool):
        super().__init__()
        self.stack = stack
        self.param_of = param_of  # id(param or a view of it) -> (param key, param numel, tensor kept alive)
        self.counted: set[int] = set()
        self.rows: list[tuple[Any, ...]] = []
        self.rules = _shape_rules() if fast else {}
        self.infos: dict[Any, _OpInfo] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        rule = self.rules.get(func)
        use_rule = rule is not None and _on_meta(args, kwargs)
        out = rule(args, kwargs) if use_rule else func(*args, **kwargs)
        info = self.infos.get(func)
        if info is None:
            info = self.infos[func] = _op_info(func)
        self._record(info, args, kwargs, out)
        return out

    def _record(self, info: _OpInfo, args: tuple, kwargs: dict[str, Any], out: Any) -> None:
        ins = _tensors(args, kwargs)
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
            if base not in _NO_WRITE:
                mac += sum(o.numel() * o.element_size() for o in outs)
            madds, flops, category = _formula(info, args, kwargs, ins, outs)
        act = 0 if info.free else _numel(outs)
        frame = self.stack[-1]
        self.rows.append((frame.layer, frame.path, info.name, category, params, madds, flops, mac, act,
                          "; ".join(_shape(t) for t in ins), "; ".join(_shape(o) for o in outs)))


# ------------------------------------------------------------------------- thop's module rules
def _thop_ops(m: nn.Module, inputs: tuple, y: Any) -> float:
    """What MIT thop 0.1.1 adds to ``m.total_ops`` for one call (its ``register_hooks`` table)."""
    t = type(m)
    x = inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None
    if not isinstance(y, torch.Tensor) or x is None:
        return 0.0
    if t in _THOP_CONV:
        return float(y.numel() * (x.shape[1] // m.groups) * math.prod(m.weight.shape[2:]))
    if t in _THOP_NORM:
        flops = 2 * x.numel()
        if getattr(m, "affine", False) or getattr(m, "elementwise_affine", False):
            flops *= 2
        return float(flops)
    if t is nn.Linear:
        return float(m.in_features * y.numel())
    if t in _THOP_AVGPOOL:
        return float(y.numel())
    if t in _THOP_ADAPTIVE_AVG:
        kernel = math.prod(a / b for a, b in zip(x.shape[2:], y.shape[2:], strict=False))
        return float(int((kernel + 1) * y.numel()))
    if t in _THOP_UPSAMPLE:
        mode = getattr(m, "mode", "nearest")
        return float(y.numel() * {"nearest": 1, "linear": 5, "bilinear": 11, "bicubic": 259,
                                  "trilinear": 31}.get(mode, 0))
    if t is nn.PReLU and not m.training:
        return float(x.numel())
    if t is nn.Softmax and m.dim is not None:
        nf = x.shape[m.dim]
        return float((x.numel() // nf) * (3 * nf - 1))
    return 0.0


_THOP_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_THOP_NORM = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm, nn.LayerNorm,
              nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
_THOP_AVGPOOL = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)
_THOP_ADAPTIVE_AVG = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d)
_THOP_UPSAMPLE = (nn.Upsample, nn.UpsamplingBilinear2d, nn.UpsamplingNearest2d)


# ----------------------------------------------------------------------------------- counting
def _layer_of(path: str) -> int:
    parts = path.split(".")
    if len(parts) > 1 and parts[0] == "layers" and parts[1].isdigit():
        return int(parts[1])
    return -1


@contextlib.contextmanager
def _swapped_tensors(model: nn.Module, make: Callable[[torch.Tensor], torch.Tensor] | None
                     ) -> Iterator[dict[int, torch.Tensor]]:
    """Temporarily replace every parameter and buffer by ``make(t)`` (shared tensors stay shared).

    Yields ``id(original) -> replacement``; with ``make=None`` nothing is swapped and the map is identity.
    The module dictionaries are restored in ``finally``, so the model is unchanged afterwards.
    """
    mapping: dict[int, torch.Tensor] = {}
    undo: list[tuple[dict[str, Any], str, Any]] = []
    try:
        for m in model.modules():
            for store in (m._parameters, m._buffers):
                for name, t in list(store.items()):
                    if t is None:
                        continue
                    if make is None:
                        mapping[id(t)] = t
                        continue
                    new = mapping.get(id(t))
                    if new is None:
                        new = mapping[id(t)] = make(t)
                    undo.append((store, name, t))
                    store[name] = new
        yield mapping
    finally:
        for store, name, t in reversed(undo):
            store[name] = t


def _input_channels(model: nn.Module) -> int:
    ch = getattr(model, "in_channels", None)
    if isinstance(ch, int):
        return ch
    for p in model.parameters():
        if p.dim() >= 3:
            return int(p.shape[1])
    return 3


def count_model(model: nn.Module, input_shape: Sequence[int] | None = None, *, imgsz: int | None = None,
                meta: bool = True, dtype: torch.dtype = torch.float32) -> CountResult:
    """Count ``model`` on one input of ``input_shape`` (or ``(1, C, imgsz, imgsz)``) in eval mode.

    ``meta=True`` computes nothing (meta tensors, own shape rules for heavy ops); if the model has
    data-dependent code that meta tensors cannot run, it warns and counts again on real tensors.
    ``dtype`` sets the element size of activations and floating-point weights (``mac_bytes``).
    The model is not modified: parameters, buffers, hooks and ``training`` flags are as before.
    """
    if input_shape is None:
        if imgsz is None:
            raise ConfigError("count_model needs input_shape=(N, C, H, W) or imgsz=<int>")
        input_shape = (1, _input_channels(model), int(imgsz), int(imgsz))
    shape = tuple(int(s) for s in input_shape)
    result = None
    if meta:
        try:
            result = _count(model, shape, meta=True, dtype=dtype)
        except (NotImplementedError, RuntimeError) as exc:
            warnings.warn(f"meta-tensor count failed ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
                          "counting again on real tensors", RuntimeWarning, stacklevel=2)
    if result is None:
        result = _count(model, shape, meta=False, dtype=dtype)
    _apply_yolo_probe(model, result, dtype)
    return result


def _apply_yolo_probe(model: nn.Module, result: CountResult, dtype: torch.dtype) -> None:
    """Detectors: redo thop's rules at YOLOv5's stride-sized probe and scale, as ``model_info`` prints."""
    if not getattr(model, "is_detector", False) or len(result.input_shape) != 4:
        return
    n, c, h, w = result.input_shape
    s = max(max_stride(model), 32)
    result.yolo_probe = s
    if (n, h, w) != (1, s, s):
        meta = result.meta

        def probe() -> float:
            return _count(model, (1, c, s, s), meta=meta, dtype=dtype).yolo_gflops * n * (h / s) * (w / s)

        result._probe = probe


def _count(model: nn.Module, shape: tuple[int, ...], *, meta: bool, dtype: torch.dtype) -> CountResult:
    named = list(model.named_modules())
    frames = {id(m): _Frame(path, _layer_of(path)) for path, m in named}
    blocks = {path: type(m).__name__ for path, m in named if path.count(".") == 0
              or (path.startswith("layers.") and path.count(".") == 1)}
    owner: dict[int, tuple[str, int]] = {}
    for path, m in named:
        for p in m._parameters.values():
            if p is not None and id(p) not in owner:
                owner[id(p)] = (path, p.numel())

    def convert(t: torch.Tensor) -> torch.Tensor:
        tdtype = dtype if t.is_floating_point() else t.dtype
        if meta:
            return torch.empty(t.shape, dtype=tdtype, device="meta")
        return t.detach().to(dtype=tdtype)

    need_swap = meta or any(p.is_floating_point() and p.dtype != dtype for p in model.parameters())
    stack = [frames[id(model)]]
    thop_by_type: dict[str, float] = {}

    def pre_hook(m: nn.Module, inputs: Any) -> None:
        stack.append(frames.get(id(m), stack[-1]))

    def post_hook(m: nn.Module, inputs: Any, output: Any) -> None:
        if len(stack) > 1:
            stack.pop()
        if id(m) in frames:
            ops = _thop_ops(m, inputs, output)
            if ops:
                key = type(m).__name__
                thop_by_type[key] = thop_by_type.get(key, 0.0) + ops

    training = {m: m.training for _, m in named}
    handles = []
    try:
        model.eval()
        with _swapped_tensors(model, convert if need_swap else None) as mapping:
            param_of = {id(t): (key, owner[key][1], t) for key, t in mapping.items() if key in owner}
            if meta:
                x = torch.empty(shape, dtype=dtype, device="meta")
            else:
                x = torch.randn(shape, generator=torch.Generator().manual_seed(0)).to(dtype)
            mode = _CountingMode(stack, param_of, fast=meta)
            handles.append(register_module_forward_pre_hook(pre_hook))
            handles.append(register_module_forward_hook(post_hook, always_call=True))
            with torch.no_grad(), mode:
                model(x)
            counted = mode.counted
            rows = mode.rows
    finally:
        for h in handles:
            h.remove()
        for m, flag in training.items():
            m.training = flag
    for key, (path, numel) in owner.items():
        if key not in counted:
            rows.append((_layer_of(path), path, "(unused)", "other", numel, 0, 0, 0, 0, "", ""))
    ops = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    return CountResult(ops=ops, input_shape=shape, dtype=str(dtype).removeprefix("torch."), meta=meta,
                       blocks=blocks, thop_by_type=thop_by_type)


def count(model: nn.Module | str | Path | dict, imgsz: int = 640, *, meta: bool = True,
          dtype: torch.dtype = torch.float32) -> CountResult:
    """Build ``model`` if it is a zoo name, YAML path or dict, check ``imgsz`` and count it.

    Raises ``UnknownModelError`` for an unknown name and ``ConfigError`` when ``imgsz`` is not a multiple
    of the model's largest stride.
    """
    from latlab.ops.builder import as_model

    net, _ = as_model(model)
    check_imgsz(net, imgsz)
    return count_model(net, imgsz=imgsz, meta=meta, dtype=dtype)




