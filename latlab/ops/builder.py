"""Build a ``LatlabModel`` from a YOLOv5-style model YAML.

Re-implements the semantics of YOLOv5's ``parse_model`` (rows ``[from, number, module, args]``,
``depth_multiple`` on ``number``, ``width_multiple`` on output channels rounded up to a multiple of
``channel_divisor`` (8, as YOLOv5), ``nc``/``anchors`` substitution, multi-input ``from``, ``Concat`` channel
sums, ``Detect`` wiring), with two differences on purpose:

- module names resolve only through :mod:`latlab.ops.registry`, and string arguments are never evaluated:
  only ``nc``, ``anchors``, ``None``, ``True``/``False`` and plain identifiers (``nearest``, ``relu``) are
  accepted; anything else is rejected with the layer and field named;
- every problem is a :class:`~latlab.errors.ModelBuildError` naming the layer, the field and what was
  expected, including shape errors found by a dry forward pass.

``channel_divisor: 1`` (a top-level key) keeps channel counts exactly as written, which the
torchvision-compatible classification configs need (ShuffleNetV2's 116/232/464 are not multiples of 8).
"""

from __future__ import annotations

import inspect
import math
import re
import warnings
from collections.abc import Sequence
from copy import deepcopy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latlab.errors import ConfigError, ModelBuildError
from latlab.inputs import example_input
from latlab.ops.activations import activation_name, default_activation
from latlab.ops.model import LatlabModel, LayerInfo
from latlab.ops.registry import BlockSpec, get_block
from latlab.ops.zoo import resolve_config
from latlab.validate import (
    MAX_CHANNELS,
    MAX_COUNT,
    MAX_IMGSZ,
    MAX_LIST,
    MAX_MODEL_GB,
    MAX_REPEAT,
    Limit,
    length,
    memory_estimate,
    multiple,
    positive_float,
    positive_int,
)
from latlab.yamlio import read_yaml

KNOWN_KEYS = {"nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head", "channel_divisor",
              "ch", "names", "meta", "imgsz", "activation"}
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STRIDE_PROBE = 256
MAX_ANCHORS = Limit("anchor pairs per level", 64, "LATLAB_MAX_ANCHORS")
MAX_LEVELS = 16  # Detect levels (YOLOv5 uses 3 or 4)


def load_config(cfg: str | Path | dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Return the config dict and a label for error messages (file path, zoo name or ``<dict>``)."""
    if isinstance(cfg, dict):
        return deepcopy(cfg), "<dict>"
    path = resolve_config(cfg)
    data = read_yaml(path, what="model YAML")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'backbone' and 'head', got {type(data).__name__}")
    return data, str(path)


def make_divisible(x: float, divisor: int) -> int:
    """YOLOv5's channel rounding: up to the next multiple of ``divisor``."""
    return int(math.ceil(x / divisor) * divisor)


def build_model(
    cfg: str | Path | dict[str, Any],
    *,
    nc: int | None = None,
    depth_multiple: float | None = None,
    width_multiple: float | None = None,
    ch: int | None = None,
    imgsz: int | None = None,
    strides: Sequence[float] | None = None,
) -> LatlabModel:
    """Build a model from a zoo name, a YAML path or a dict; keyword overrides replace the YAML's values.

    ``imgsz`` is recorded as the model's default input size (detectors must get a multiple of the stride).
    ``strides``: a detector's Detect strides when the caller knows them (a search space's points always
    reach 8/16/32); the layer-by-layer dry run that finds them, and catches shape errors, is then skipped.
    """
    d, source = load_config(cfg)
    unknown = set(d) - KNOWN_KEYS
    if unknown:
        warnings.warn(f"{source}: ignoring unknown top-level keys {sorted(unknown)}", stacklevel=2)
    for key, value in (("nc", nc), ("depth_multiple", depth_multiple), ("width_multiple", width_multiple),
                       ("ch", ch), ("imgsz", imgsz)):
        if value is not None:
            d[key] = value
    _check_top_level(d, source)
    in_ch = int(d.get("ch", 3))
    with default_activation(d.get("activation", "silu")):
        layers, info = _parse_layers(d, in_ch, source)
    model = LatlabModel(layers, info, d, in_ch)
    if strides is not None and model.is_detector:
        _set_detect_strides(model, torch.tensor([float(s) for s in strides]))
    else:
        _dry_run_and_strides(model, source)
    if model.is_detector:
        _yolo_init(model)
    return model


def _check_top_level(d: dict[str, Any], source: str) -> None:
    """Types and bounds of the top-level keys, before any layer is expanded."""
    for key in ("backbone", "head"):
        if key not in d:
            raise ConfigError(f"{source}: missing top-level key '{key}' (a list of [from, number, module, args])")
        if not isinstance(d[key], list):
            raise ConfigError(f"{source}: '{key}' must be a list of [from, number, module, args] rows")
    if not d["backbone"]:
        raise ConfigError(f"{source}: 'backbone' is empty; it needs at least one [from, number, module, args] row")
    length(d["backbone"] + d["head"], f"{source}: backbone + head", limit=MAX_LIST)
    for key, limit in (("nc", MAX_COUNT), ("ch", MAX_CHANNELS), ("channel_divisor", MAX_CHANNELS),
                       ("imgsz", MAX_IMGSZ)):
        if key in d:
            positive_int(d[key], f"{source}: '{key}'", limit=limit)
    for key in ("depth_multiple", "width_multiple"):
        if key in d:
            value = multiple(d[key], f"{source}: {key}")
            if isinstance(d[key], str):  # YAML 1.1 reads '1e-1' as text: keep the number it spells
                d[key] = value
    _check_anchors(d.get("anchors"), source)
    if "activation" in d:
        try:
            activation_name(d["activation"])
        except ValueError as exc:
            raise ConfigError(f"{source}: top-level 'activation': {exc}") from None


def _check_anchors(anchors: Any, source: str) -> None:
    """``anchors``: a count per level, or per-level lists of positive finite pixel pairs, within the limits."""
    where = f"{source}: 'anchors'"
    if anchors is None:
        return
    if isinstance(anchors, int) and not isinstance(anchors, bool):
        positive_int(anchors, where, limit=MAX_ANCHORS)
        return
    if not isinstance(anchors, list) or not anchors:
        raise ConfigError(f"{where} must be a list of per-level pixel pairs or an int")
    if len(anchors) > MAX_LEVELS:
        raise ConfigError(f"{where} lists {len(anchors)} levels; at most {MAX_LEVELS} are supported")
    for level, pairs in enumerate(anchors):
        if not isinstance(pairs, list) or not pairs or len(pairs) % 2:
            raise ConfigError(f"{where} level {level} must be a non-empty list of w, h pixel pairs")
        if len(pairs) // 2 > MAX_ANCHORS.value:
            raise ConfigError(f"{where} level {level} has {len(pairs) // 2} pairs: {MAX_ANCHORS.hint()}")
        for v in pairs:
            positive_float(v, f"{where} level {level}: anchor sizes (pixels)")


def _check_size(name: str, n: int, c1: int | None, c2: int, i: int, source: str, total: list[float]) -> None:
    """Refuse a row whose repeat count, channels or (running) parameter-memory estimate is over its limit,
    before the row's modules are allocated. The estimate, ``n × 10 × max(c1, c2)²`` float32 weights per row
    (a 3×3 conv plus a 1×1 at the widest width), is an upper bound for the shipped blocks."""
    if n > MAX_REPEAT.value:
        raise ModelBuildError(f"number {n} (after depth_multiple) is too large: {MAX_REPEAT.hint()}", layer=i,
                              field="number", source=source)
    if c2 > MAX_CHANNELS.value:
        raise ModelBuildError(f"{name} has {c2} output channels (after width_multiple): {MAX_CHANNELS.hint()}",
                              layer=i, field="args", source=source)
    total[0] += n * 10.0 * max(c1 or 0, c2) ** 2 * 4
    memory_estimate(total[0], f"{source}: the model up to layer {i} ({name})", limit=MAX_MODEL_GB)


def _resolve_arg(value: Any, d: dict[str, Any], layer: int, source: str, pos: int) -> Any:
    """Substitute the names YOLOv5 YAMLs use; refuse anything that would need evaluation."""
    if isinstance(value, list):
        return [_resolve_arg(v, d, layer, source, pos) for v in value]
    if isinstance(value, str):
        if value == "nc":
            return d.get("nc", 80)
        if value == "anchors":
            return d.get("anchors")
        if value == "None":
            return None
        if value in ("True", "False"):
            return value == "True"
        if not _IDENT.match(value):
            raise ModelBuildError(
                f"argument {pos} {value!r} is not a plain value; only numbers, lists, nc, anchors, None, True, "
                "False and plain names (e.g. 'nearest', 'relu') are allowed and nothing is evaluated",
                layer=layer, field="args", source=source)
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    raise ModelBuildError(f"argument {pos} has unsupported type {type(value).__name__}", layer=layer,
                          field="args", source=source)


def _yaml_signature(spec: BlockSpec) -> str:
    """The argument list a YAML row must give for ``spec`` (without the builder-inserted ones)."""
    params = list(inspect.signature(spec.cls.__init__).parameters.values())[1:]
    skip = {"channels": 1, "repeat": 1, "classify": 1, "bn": 1}.get(spec.kind, 0)
    names = []
    for p in params[skip:]:
        if spec.kind == "repeat" and p.name == "n":
            continue
        if spec.kind == "detect" and p.name in ("ch", "inplace"):
            continue
        names.append(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}")
    return f"[{', '.join(names)}]"


def _parse_row(row: Any, i: int, source: str) -> tuple[Any, int, str, list[Any]]:
    if not isinstance(row, list) or len(row) != 4:
        raise ModelBuildError("each row must be [from, number, module, args]", layer=i, source=source)
    f, n, name, args = row
    if not isinstance(name, str):
        raise ModelBuildError(f"module must be a name, got {name!r}", layer=i, field="module", source=source)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ModelBuildError(f"number must be an integer >= 1, got {n!r}", layer=i, field="number", source=source)
    if not isinstance(args, list):
        raise ModelBuildError(f"args must be a list, got {args!r}", layer=i, field="args", source=source)
    return f, n, name, args


def _normalise_from(f: Any, i: int, source: str) -> int | list[int]:
    def one(j: Any) -> int:
        if not isinstance(j, int) or isinstance(j, bool):
            raise ModelBuildError(f"'from' entries must be integers, got {j!r}", layer=i, field="from", source=source)
        if j == -1:
            return -1
        absolute = i + j if j < 0 else j
        if absolute < 0 or absolute >= i:
            raise ModelBuildError(f"'from' index {j} is out of range: layer {i} can only read layers 0..{i - 1}",
                                  layer=i, field="from", source=source)
        return absolute

    if isinstance(f, list):
        if not f:
            raise ModelBuildError("'from' list is empty", layer=i, field="from", source=source)
        return [one(j) for j in f]
    return one(f)


def _parse_layers(d: dict[str, Any], in_ch: int, source: str) -> tuple[list[nn.Module], list[LayerInfo]]:
    gd = multiple(d.get("depth_multiple", 1.0), f"{source}: depth_multiple")
    gw = multiple(d.get("width_multiple", 1.0), f"{source}: width_multiple")
    divisor = int(d.get("channel_divisor", 8))
    nc = int(d.get("nc", 80))
    anchors = d.get("anchors")
    na = (len(anchors[0]) // 2 if isinstance(anchors, list) else anchors) if anchors else 0
    no = na * (nc + 5)
    ch: list[int] = []
    layers: list[nn.Module] = []
    info: list[LayerInfo] = []
    weight_bytes = [0.0]  # running parameter-memory estimate (_check_size)
    for i, row in enumerate(d["backbone"] + d["head"]):
        f, n_raw, name, raw_args = _parse_row(row, i, source)
        try:
            spec = get_block(name)
        except KeyError as exc:
            raise ModelBuildError(str(exc.args[0]), layer=i, field="module", source=source) from None
        f = _normalise_from(f, i, source)
        if spec.kind not in ("concat", "detect") and isinstance(f, list):
            raise ModelBuildError(f"{name} takes one input; 'from' must be an integer, got {f}", layer=i,
                                  field="from", source=source)
        if spec.kind in ("concat", "detect") and not isinstance(f, list):
            f = [f]

        def c_of(j: int, i: int = i, ch: list[int] = ch) -> int:
            return in_ch if (j == -1 and i == 0) else ch[j]

        args = [_resolve_arg(a, d, i, source, k) for k, a in enumerate(raw_args)]
        n = max(round(n_raw * gd), 1) if n_raw > 1 else n_raw
        if n > MAX_REPEAT.value:
            _check_size(name, n, None, 1, i, source, weight_bytes)
        c1 = c_of(f) if isinstance(f, int) else None
        if spec.kind in ("channels", "repeat", "classify"):
            if not args:
                raise ModelBuildError(f"{name} needs args {_yaml_signature(spec)}", layer=i, field="args",
                                      source=source)
            c2 = args[0]
            if not isinstance(c2, int) or isinstance(c2, bool) or c2 < 1:
                raise ModelBuildError(f"first argument (output channels) must be a positive integer, got {c2!r}",
                                      layer=i, field="args", source=source)
            if spec.kind == "classify":
                args = [c1, *args]
            else:
                if c2 != no:
                    c2 = make_divisible(c2 * gw, divisor)
                _check_size(name, n, c1, c2, i, source, weight_bytes)
                args = [c1, c2, *args[1:]]
                if spec.kind == "repeat":
                    args.insert(2, n)
                    n = 1
                elif n > 1 and c1 != c2:
                    raise ModelBuildError(
                        f"number={n} stacks {name} with the same args, so input channels ({c1}) must equal output "
                        f"channels ({c2}); split the row", layer=i, field="number", source=source)
        elif spec.kind == "bn":
            args, c2 = [c1], c1
        elif spec.kind == "concat":
            c2 = sum(c_of(j) for j in f)
        elif spec.kind == "detect":
            if len(args) < 2 or args[1] is None:
                raise ModelBuildError("Detect needs args [nc, anchors] and top-level 'anchors'", layer=i,
                                      field="args", source=source)
            _check_anchors(args[1], f"{source}, layer {i}")
            if isinstance(args[1], int):
                args[1] = [list(range(args[1] * 2))] * len(f)
            if len(args[1]) != len(f):
                raise ModelBuildError(f"Detect has {len(args[1])} anchor levels but 'from' names {len(f)} inputs",
                                      layer=i, field="from", source=source)
            args = [*args[:2], [c_of(j) for j in f], *args[2:]]
            c2 = no
            weight_bytes[0] += sum(c_of(j) for j in f) * no * 4.0
            memory_estimate(weight_bytes[0], f"{source}: the model up to layer {i} ({name})", limit=MAX_MODEL_GB)
        else:
            c2 = c1
        module = _instantiate(spec, args, n, i, source)
        params = sum(p.numel() for p in module.parameters())
        layers.append(module)
        info.append(LayerInfo(i, f, n, name, _printable(args), params, int(c2), raw_args))
        if i == 0:
            ch = []
        ch.append(int(c2))
    return layers, info


def _printable(args: list[Any]) -> list[Any]:
    return [a if not isinstance(a, list) or len(str(a)) < 60 else "..." for a in args]


def _instantiate(spec: BlockSpec, args: list[Any], n: int, i: int, source: str) -> nn.Module:
    try:
        if n > 1:
            return nn.Sequential(*(spec.cls(*args) for _ in range(n)))
        return spec.cls(*args)
    except TypeError as exc:
        raise ModelBuildError(f"{spec.name} expects args {_yaml_signature(spec)}, got {_yaml_args(args, spec)} "
                              f"({exc})", layer=i, field="args", source=source) from None
    except (ValueError, RuntimeError, AssertionError) as exc:
        raise ModelBuildError(f"{spec.name}: {exc}", layer=i, field="args", source=source) from None


def _yaml_args(args: list[Any], spec: BlockSpec) -> list[Any]:
    """The YAML-visible part of the built argument list (drops the inserted ``c1`` and ``n``)."""
    if spec.kind == "repeat":
        return [args[1], *args[3:]]
    if spec.kind in ("channels", "classify", "bn"):
        return args[1:]
    if spec.kind == "detect":
        return args[:2] + args[3:]
    return args


def _dry_run_and_strides(model: LatlabModel, source: str) -> None:
    """Run a small forward pass layer by layer: catch shape errors by layer, and set Detect strides."""
    s = _STRIDE_PROBE
    x = example_input(s, channels=model.in_channels)
    saved: dict[int, Any] = {}
    was_training = model.training
    model.train()
    with torch.no_grad():
        for i, (m, li) in enumerate(zip(model.layers, model.layer_info, strict=True)):
            f = li.from_
            inp = [x if j == -1 else saved[j] for j in f] if isinstance(f, list) else (x if f == -1 else saved[f])
            try:
                x = m(inp)
            except Exception as exc:
                shapes = [tuple(t.shape) for t in inp] if isinstance(inp, list) else tuple(inp.shape)
                raise ModelBuildError(f"{li.module} failed on input of shape {shapes}: {_first_line(exc)}",
                                      layer=i, field="from/args", source=source) from None
            saved[i] = x
    model.train(was_training)
    if model.is_detector:
        _set_detect_strides(model, torch.tensor([s / t.shape[-2] for t in x]))
    else:
        model.stride = torch.tensor([float(s // x.shape[-1]) if x.dim() == 4 else 32.0])


def _set_detect_strides(model: LatlabModel, stride: torch.Tensor) -> None:
    """Give Detect its strides: anchors in the right order, scaled to grid units; the model's stride."""
    det = model.detect
    det.stride = stride
    _check_anchor_order(det)
    det.anchors /= det.stride.view(-1, 1, 1)
    model.stride = det.stride.clone()


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _check_anchor_order(det: nn.Module) -> None:
    """Anchors must grow with stride; flip them if the YAML lists them the other way round (YOLOv5 does)."""
    a = det.anchors.prod(-1).mean(-1).view(-1)
    da, ds = a[-1] - a[0], det.stride[-1] - det.stride[0]
    if da and da.sign() != ds.sign():
        det.anchors[:] = det.anchors.flip(0)


def _yolo_init(model: LatlabModel) -> None:
    """YOLOv5's ``initialize_weights`` (BN eps/momentum) and Detect bias priors."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = 1e-3
            m.momentum = 0.03
    model.detect.initialize_biases()
