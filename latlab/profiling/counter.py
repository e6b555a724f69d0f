"""Per-operator counts of a model: params, multiply-adds, FLOPs, memory access bytes, activations.

The counter is a ``TorchDispatchMode`` (the mechanism behind ``torch.utils.flop_counter.FlopCounterMode``,
here :class:`latlab.profiling.dispatch.CountingMode`): every aten op the forward pass dispatches is seen,
whether it came from an ``nn.Module`` or from functional code (``F.conv2d``, ``torch.matmul``, ``x.chunk``,
``torch.cat``, ``F.interpolate``, a channel shuffle's ``view``/``transpose``/``contiguous``). Every op is
listed, zero-FLOP ops included; the columns are documented in :mod:`latlab.profiling.count_result`, the
FLOP formulas (and how to add one for a custom op) in :mod:`latlab.profiling.op_rules`.

Attribution: forward pre/post hooks registered globally for the duration of the count (and removed after)
keep a module stack, so each op is charged to the innermost module that issued it, and to its YAML layer
(module path ``layers.<i>…`` → layer ``i``; ``-1`` for ops outside ``layers``). The model is left as it
was: the counter adds no hooks, buffers or attributes, puts the original parameter and buffer objects back,
and restores every ``training`` flag (counting runs in eval mode, i.e. the deployed graph). A forward that
caches tensors in plain attributes would cache meta tensors in meta mode (YOLOv5's ``Detect`` grid cache
does this; latlab's ``Detect`` rebuilds its grid every call), so count such models with ``meta=False``.

Meta mode (default) swaps parameters and buffers for ``meta`` tensors for the duration of the call (no real
compute, no copy of the model) and answers the output shapes of the heavy ops with its own shape formulas
(:mod:`latlab.profiling.shape_rules`) instead of calling their meta kernels, some of which are slow Python
decompositions. ``meta=False`` runs real tensors, for models with data-dependent code.

:attr:`CountResult.yolo_gflops` is YOLOv5's printed "GFLOPs": ``2 ×`` the total of MIT ``thop`` 0.1.1's
module rules (:mod:`latlab.profiling.thop_rules`). For detectors it follows YOLOv5's ``model_info`` to the
letter: thop on a stride-sized ``s × s`` input (``s = max(max stride, 32)``), scaled by ``(H/s)·(W/s)``. That
equals ``2 ×`` thop at ``H × W`` when every layer's cost scales with the image area (plain YOLOv5), and
overstates it when some do not (SE blocks on 1×1 maps, global pooling); :attr:`CountResult.thop_by_type`
always holds thop's rules at the counted input itself.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from latlab.errors import ConfigError
from latlab.ops.model import check_imgsz, max_stride
from latlab.ops.sources import as_model
from latlab.profiling.count_result import COLUMNS, SUM_COLUMNS, CountResult
from latlab.profiling.dispatch import CountingMode, EagerDispatchMode, Frame
from latlab.profiling.op_rules import ELEMENTWISE_FLOPS
from latlab.profiling.thop_rules import thop_ops

__all__ = ["COLUMNS", "ELEMENTWISE_FLOPS", "SUM_COLUMNS", "CountResult", "EagerDispatchMode", "check_imgsz",
           "count", "count_model"]


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
    frames = {id(m): Frame(path, _layer_of(path)) for path, m in named}
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
            ops = thop_ops(m, inputs, output)
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
            mode = CountingMode(stack, param_of, fast=meta)
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
    """Load ``model`` if it is not a module (any PyTorch form of :mod:`latlab.ops.sources`: zoo name, YAML
    path, dict, ``package.module:factory``, TorchScript or torch.export archive), check ``imgsz``, count it.

    Raises ``UnknownModelError`` for an unknown name and ``ConfigError`` when ``imgsz`` is not a multiple
    of the model's largest stride.
    """
    net, _ = as_model(model, "the PyTorch counter")
    check_imgsz(net, imgsz)
    return count_model(net, imgsz=imgsz, meta=meta, dtype=dtype)
