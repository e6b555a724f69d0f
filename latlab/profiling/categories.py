"""Operator categories: which kind of work an aten op is, for the paper's "FLOPs are not speed" view.

ShuffleNetV2 (Ma et al., 2018, Fig. 2) splits run time into convolution, element-wise, data movement and
other work. latlab uses a finer split so a count table can say *which* convolutions a model spends on:

==================  ======================================================================================
category            ops
==================  ======================================================================================
``conv``            dense k×k convolution (kernel > 1×1, ``groups == 1``), transposed convolution
``pointwise``       1×1 convolution with ``groups == 1``
``depthwise``       convolution with ``groups == in_channels`` (> 1), any kernel size
``group_conv``      convolution with ``1 < groups < in_channels`` (ShuffleNetV1's group 1×1, ResNeXt)
``linear``          ``mm``, ``addmm``, ``bmm``, ``baddbmm``, ``matmul``, ``linear``, ``einsum``, ``mv``
``elementwise``     arithmetic and activations: ``add``, ``mul``, ``sub``, ``div``, ``relu``, ``silu``,
                    ``hardswish``, ``hardsigmoid``, ``sigmoid``, ``gelu``, ``clamp``, ``pow``, ``exp``…
``norm``            ``native_batch_norm`` (and its inference variants), ``layer_norm``, ``group_norm``…
``pooling``         max/avg pooling, adaptive pooling, and ``mean`` over the spatial dims only
``data_movement``   ``cat``, ``stack``, ``split``/``chunk``/``split_with_sizes``, ``view``/``reshape``/
                    ``transpose``/``permute``/``t``/``expand``/slicing (free views), ``clone``/``contiguous``
                    (copies), padding, ``upsample_*``, ``copy_``, ``_to_copy``, pixel/channel shuffle
``other``           everything else: tensor factories (``empty``, ``arange``), reductions other than a
                    spatial mean (``sum``, ``softmax``), indexing, and anything not listed above
==================  ======================================================================================

In-place variants (``relu_``) share their base op's category. Whether a data-movement op actually moves
bytes (a copy) or is a free view is decided by the counter, not here.
"""

from __future__ import annotations

CATEGORIES: tuple[str, ...] = (
    "conv",
    "pointwise",
    "depthwise",
    "group_conv",
    "linear",
    "elementwise",
    "norm",
    "pooling",
    "data_movement",
    "other",
)

CONV_OPS = frozenset({
    "convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "convolution_overrideable", "mkldnn_convolution", "_slow_conv2d_forward",
    "slow_conv_dilated2d", "slow_conv_transpose2d", "_conv_depthwise2d", "cudnn_convolution",
    "cudnn_convolution_transpose", "miopen_convolution", "miopen_depthwise_convolution",
})

_LINEAR = frozenset({"mm", "addmm", "bmm", "baddbmm", "matmul", "linear", "einsum", "mv", "addmv", "dot",
                     "_addmm_activation"})

_ELEMENTWISE = frozenset({
    "add", "sub", "rsub", "mul", "div", "neg", "abs", "pow", "exp", "log", "sqrt", "rsqrt", "reciprocal",
    "square", "sign", "floor", "ceil", "round", "trunc", "frac", "fmod", "remainder", "erf",
    "relu", "relu6", "silu", "hardswish", "hardsigmoid", "sigmoid", "gelu", "tanh", "clamp", "clamp_min",
    "clamp_max", "hardtanh", "leaky_relu", "elu", "selu", "celu", "prelu", "_prelu_kernel", "mish",
    "softplus", "threshold", "logsigmoid", "log_sigmoid_forward", "where", "maximum", "minimum",
    "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_not", "bitwise_and",
    "bitwise_or", "bitwise_not", "addcmul", "addcdiv", "lerp", "masked_fill", "sin", "cos", "exp2", "expm1",
    "log1p", "log2", "atan", "nan_to_num", "floor_divide",
})

_NORM = frozenset({
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional", "_batch_norm_impl_index", "cudnn_batch_norm",
    "miopen_batch_norm", "layer_norm", "native_layer_norm", "group_norm", "native_group_norm",
    "instance_norm", "rms_norm", "_fused_rms_norm", "local_response_norm",
})

_POOLING = frozenset({
    "max_pool1d", "max_pool2d", "max_pool3d", "max_pool1d_with_indices", "max_pool2d_with_indices",
    "max_pool3d_with_indices", "avg_pool1d", "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d",
    "adaptive_avg_pool2d", "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "mkldnn_max_pool2d",
    "mkldnn_adaptive_avg_pool2d", "lp_pool2d", "fractional_max_pool2d",
})

_DATA_MOVEMENT = frozenset({
    "cat", "concat", "concatenate", "stack", "hstack", "vstack", "split", "split_with_sizes",
    "unsafe_split", "unsafe_split_with_sizes", "chunk", "unsafe_chunk", "tensor_split", "unbind",
    "view", "_unsafe_view", "reshape", "_reshape_alias", "view_as", "reshape_as", "transpose", "t",
    "permute", "expand", "expand_as", "squeeze", "unsqueeze", "flatten", "unflatten", "slice", "select",
    "narrow", "as_strided", "alias", "movedim", "swapaxes", "diagonal", "unfold",
    "clone", "contiguous", "copy_", "_to_copy", "to", "repeat", "roll", "flip", "tile", "pad",
    "constant_pad_nd", "reflection_pad1d", "reflection_pad2d", "reflection_pad3d", "replication_pad1d",
    "replication_pad2d", "replication_pad3d", "_pad_enum", "zero_pad2d",
    "upsample_nearest1d", "upsample_nearest2d", "upsample_nearest3d", "_upsample_nearest_exact1d",
    "_upsample_nearest_exact2d", "_upsample_nearest_exact3d", "upsample_linear1d", "upsample_bilinear2d",
    "_upsample_bilinear2d_aa", "upsample_bicubic2d", "upsample_trilinear3d", "interpolate",
    "pixel_shuffle", "pixel_unshuffle", "channel_shuffle", "native_channel_shuffle", "index_select",
    "gather", "detach", "lift_fresh", "lift_fresh_copy",
})

_SPATIAL_DIMS = {3: {2}, 4: {2, 3}, 5: {2, 3, 4}}


def base_name(op: str) -> str:
    """The op name without namespace, overload and in-place underscore: ``aten.relu_.default`` → ``relu``."""
    name = op.split("::")[-1]
    parts = name.split(".")
    if len(parts) > 1 and parts[0] in ("aten", "prims", "torch", "ops"):
        parts = parts[1:]
    name = parts[0]
    if name.endswith("_") and not name.startswith("_") and name != "copy_":
        name = name[:-1]
    return name


def conv_category(in_channels: int, groups: int, kernel_numel: int, *, transposed: bool = False) -> str:
    """Category of a convolution from its geometry.

    ``depthwise`` when every input channel is its own group (``groups == in_channels > 1``),
    ``group_conv`` for ``1 < groups < in_channels``, otherwise ``pointwise`` for a 1×1 kernel and
    ``conv`` for anything larger (transposed convolutions are ``conv`` unless grouped).
    """
    if groups > 1 and groups == in_channels:
        return "depthwise"
    if groups > 1:
        return "group_conv"
    if kernel_numel == 1 and not transposed:
        return "pointwise"
    return "conv"


def op_category(op: str, *, reduce_dims: list[int] | tuple[int, ...] | None = None,
                ndim: int | None = None) -> str:
    """Category of a non-convolution op (convolutions need :func:`conv_category`).

    ``reduce_dims``/``ndim`` let a ``mean`` over exactly the spatial dims of an N×C×… tensor (global
    average pooling written as ``x.mean((2, 3))``) count as ``pooling``; any other reduction is ``other``.
    """
    name = base_name(op)
    if name in CONV_OPS:
        return "conv"
    if name in _LINEAR:
        return "linear"
    if name in _ELEMENTWISE:
        return "elementwise"
    if name in _NORM:
        return "norm"
    if name in _POOLING:
        return "pooling"
    if name in _DATA_MOVEMENT:
        return "data_movement"
    if name == "mean" and reduce_dims is not None and ndim in _SPATIAL_DIMS:
        dims = {d % ndim for d in reduce_dims}
        if dims == _SPATIAL_DIMS[ndim]:
            return "pooling"
    return "other"


def is_conv_op(op: str) -> bool:
    """True for any convolution op name (its category then depends on geometry)."""
    return base_name(op) in CONV_OPS


def category_ops(category: str) -> frozenset[str]:
    """The op base names listed under ``category`` above (``conv`` lists every convolution op).

    Used to register one FLOP rule per listed op (:mod:`latlab.profiling.op_rules`). The convolution
    categories other than ``conv`` and ``other`` have no fixed list (geometry or default): an error.
    """
    lists = {"conv": CONV_OPS, "linear": _LINEAR, "elementwise": _ELEMENTWISE, "norm": _NORM, "pooling": _POOLING,
             "data_movement": _DATA_MOVEMENT}
    if category not in lists:
        known = ", ".join(lists)
        raise KeyError(f"category {category!r} has no op list (categories with one: {known})")
    return lists[category]
