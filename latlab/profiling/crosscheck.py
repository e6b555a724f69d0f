"""Cross-check latlab's counts against fvcore and thop, and say why the totals differ.

The three counters answer different questions, so their totals disagree by design:

- latlab ``madds``: multiply-adds of every convolution and matrix product the dispatcher saw (functional
  ``F.conv2d``/``torch.matmul`` included), bias, BN, activations and pooling excluded.
- fvcore ``FlopCountAnalysis``: traces the model with ``torch.jit`` (so it also sees functional calls) and
  counts one "flop" per multiply-add for ``aten::_convolution``, ``linear``, ``matmul``/``mm``/``bmm``/
  ``einsum``, plus ``batch_norm`` at 2 per element in eval mode with affine weights (1 without),
  ``upsample_nearest2d`` 1 per output element, ``adaptive_avg_pool2d`` 1 per input element,
  ``layer_norm``/``group_norm`` 5 per element (4 without affine), batch norm in training mode 5 per element;
  every other op (SiLU, ReLU, add, max-pool, cat…) is skipped.
- thop 0.1.1 ``profile``: forward hooks on modules whose *exact* type it registers: Conv ``n_out·C_in/g·K``
  (bias ignored), BatchNorm/LayerNorm ``2·numel`` doubled when affine (4 per element), Linear
  ``in_features·n_out``, nearest Upsample 1 per output element, AvgPool 1 per output element, AdaptiveAvgPool
  ``(K+1)`` per output element, ReLU/SiLU/MaxPool 0. Functional ops and subclasses or custom module types
  are invisible to it.
- YOLOv5's "GFLOPs" is ``2 ×`` thop's total (``utils/torch_utils.py: model_info``).

:func:`crosscheck` returns one row per counter with columns ``counter``, ``total`` (raw count), ``unit``,
``ratio_to_latlab_madds`` and ``reason`` (the breakdown behind that counter's total for this model).
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import thop
import torch
from fvcore.nn import FlopCountAnalysis
from torch import nn

from latlab.ops.sources import as_model
from latlab.profiling.counter import CountResult, check_imgsz, count_model

CONV_CATEGORIES = ("conv", "pointwise", "depthwise", "group_conv")
CROSSCHECK_COLUMNS = ("counter", "total", "unit", "ratio_to_latlab_madds", "reason")
_THOP_MADD_TYPES = frozenset({"Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d",
                              "ConvTranspose3d", "Linear"})


def _g(x: float) -> str:
    return f"{x / 1e9:.4g} G" if abs(x) >= 1e8 else f"{x / 1e6:.4g} M"


def fvcore_count(model: nn.Module, input_shape: Sequence[int]) -> tuple[float, dict[str, float], dict[str, int]]:
    """fvcore's total, its per-operator dict and the ops it skipped, on an eval-mode deepcopy of ``model``."""
    net = copy.deepcopy(model).eval()
    x = torch.randn(tuple(input_shape))
    logger = logging.getLogger("fvcore")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            fa = FlopCountAnalysis(net, x)
            fa.unsupported_ops_warnings(False)
            fa.uncalled_modules_warnings(False)
            fa.tracer_warnings("none")
            total = float(fa.total())
            by_op = {k: float(v) for k, v in fa.by_operator().items()}
            skipped = dict(fa.unsupported_ops())
    finally:
        logger.setLevel(level)
    return total, by_op, skipped


def thop_count(model: nn.Module, input_shape: Sequence[int]) -> tuple[float, float]:
    """thop's ``(total_ops, total_params)`` on a deepcopy, so no ``total_ops`` buffers touch ``model``."""
    net = copy.deepcopy(model)
    x = torch.randn(tuple(input_shape))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ops, params = thop.profile(net, inputs=(x,), verbose=False)
    return float(ops), float(params)


def crosscheck(model: nn.Module | str | Path | dict, imgsz: int = 640, *,
               counters: Sequence[str] = ("fvcore", "thop"), result: CountResult | None = None) -> pd.DataFrame:
    """Totals of latlab, fvcore, thop and YOLOv5's GFLOPs convention for ``model`` at ``imgsz``.

    ``model`` is a module, zoo name, YAML path or config dict; ``result`` reuses a latlab count of the same
    model and size. Columns: see the module docstring.
    """
    net, _ = as_model(model, "the fvcore/thop cross-check")
    check_imgsz(net, imgsz)
    res = result if result is not None else count_model(net, imgsz=imgsz)
    ops = res.ops
    madds = float(res.totals["madds"])
    conv_madds = float(ops.loc[ops["category"].isin(CONV_CATEGORIES), "madds"].sum())
    lin_madds = float(ops.loc[ops["category"] == "linear", "madds"].sum())
    bn_rows = ops[ops["op"].str.contains("batch_norm")]
    bn_elems = float(bn_rows["act_elems"].sum())
    rows: list[dict[str, object]] = [
        {"counter": "latlab", "total": madds, "unit": "madds",
         "reason": f"multiply-adds of every conv ({_g(conv_madds)}) and matrix product ({_g(lin_madds)}) the "
                   "dispatcher saw, functional calls included; bias, BN, activations, pooling excluded"},
        {"counter": "latlab flops", "total": float(res.totals["flops"]), "unit": "flops",
         "reason": "2 × madds + bias adds + element-wise, BN (2 per element), activation, pooling work "
                   "(formulas in latlab.profiling.counter)"},
        {"counter": "latlab YOLOv5 convention", "total": res.yolo_gflops * 1e9, "unit": "flops (2 × thop rules)",
         "reason": "thop 0.1.1's module rules re-implemented, times 2" + (
             f"; as YOLOv5's model_info: counted at {res.yolo_probe}×{res.yolo_probe} and scaled by "
             f"(imgsz/{res.yolo_probe})², which overstates layers whose cost does not grow with the image "
             f"(SE blocks on 1×1 maps, global pooling): 2 × thop at the input itself is "
             f"{2 * sum(res.thop_by_type.values()) / 1e9:.4g} G" if res.yolo_probe else "")},
    ]
    shape = res.input_shape
    if "fvcore" in counters:
        total, by_op, skipped = fvcore_count(net, shape)
        fv_conv = by_op.get("conv", 0.0)
        parts = ", ".join(f"{k} {_g(v)}" for k, v in sorted(by_op.items(), key=lambda kv: -kv[1]))
        conv_note = "equal to" if fv_conv == conv_madds else f"differs by {_g(fv_conv - conv_madds)} from"
        bn_note = ""
        if "batch_norm" in by_op and bn_elems:
            bn_note = f"; batch_norm = {by_op['batch_norm'] / bn_elems:.3g} per BN element ({bn_elems:.0f} elements)"
        skip = ", ".join(k.removeprefix("aten::") for k in sorted(skipped))
        rows.append({"counter": "fvcore", "total": total, "unit": "fvcore flops (1 per multiply-add)",
                     "reason": f"jit trace (sees functional calls): {parts}; conv {conv_note} latlab's conv madds"
                               f"{bn_note}; skipped ops: {skip or 'none'}"})
    if "thop" in counters:
        total, _ = thop_count(net, shape)
        by_type = res.thop_by_type
        parts = ", ".join(f"{k} {_g(v)}" for k, v in sorted(by_type.items(), key=lambda kv: -kv[1]))
        seen = sum(v for k, v in by_type.items() if k in _THOP_MADD_TYPES)
        missed = conv_madds + lin_madds - seen
        bn_note = ""
        bn_thop = sum(v for k, v in by_type.items() if "Norm" in k)
        if bn_thop and bn_elems:
            bn_note = f"; norm = {bn_thop / bn_elems:.3g} per element"
        match = "matches" if abs(total - sum(by_type.values())) < 0.5 else "does NOT match"
        rows.append({"counter": "thop", "total": total, "unit": "thop ops (1 per multiply-add)",
                     "reason": f"module hooks on exact registered types: {parts or 'nothing'}{bn_note}; bias "
                               f"ignored; conv/linear madds outside Conv/Linear modules (functional, custom "
                               f"types): {_g(missed)}; latlab's re-implementation {match}"})
        rows.append({"counter": "YOLOv5 GFLOPs", "total": 2.0 * total, "unit": "flops (2 × thop)",
                     "reason": f"2 × thop at the counted input = {2.0 * total / 1e9:.4g} G; YOLOv5's model_info "
                               f"prints {res.yolo_gflops:.1f} GFLOPs (see the latlab YOLOv5 convention row)"})
    df = pd.DataFrame(rows)
    df["ratio_to_latlab_madds"] = df["total"] / madds if madds else float("nan")
    return df[list(CROSSCHECK_COLUMNS)]
