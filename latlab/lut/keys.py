"""Canonical keys of block instances: the unit a latency table stores one entry for.

Every YAML layer of a built model is a unit, so stem, backbone blocks, neck (Upsample, Concat, C3, Conv)
and head (Detect/Classify) are all tabulated and a prediction is a plain sum over the model's units, with
no part left out. A layer written with ``number > 1`` (an ``nn.Sequential`` of copies) contributes one unit
per copy, each keyed by its own input shape, so ``Shuffle_Block`` ×3 at 20×20 is three uses of one entry.

A key names everything that changes the block's latency::

    Shuffle_Block(c1=128,c2=128,stride=1)@1x128x20x20#9c1f04aa

- the registry name of the block (``type``);
- every constructor argument after binding to the class signature with defaults applied, so ``[128]`` and
  ``[128, 1]`` give the same key (``c1`` = input channels, ``c2`` = output channels, stride, kernel,
  expansion, SE, activation ...); Detect's anchors are reduced to their shape (their values cost nothing);
- the input shape(s) (resolution and batch);
- a digest of the module's structure (sub-module types and parameter shapes), so two instances that the
  arguments alone cannot tell apart (a changed block implementation, a model-wide setting) never share one.

``fields`` spells the usual descriptors out (type, c_in, c_out, stride, kernel, expansion, se, activation,
input resolution) for people and filters; the key is what is matched. A searchable family whose block
names a descriptor's parameter differently declares it (``SearchFamily.fields``); the others follow the
naming convention of :data:`FIELD_PARAMS`.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from latlab.errors import ConfigError
from latlab.ops.registry import family_fields, get_block

# Naming convention: constructor parameter names (across the registered blocks) that hold each descriptor,
# in priority order; a family's ``SearchFamily.fields`` overrides it for its block.
FIELD_PARAMS: dict[str, tuple[str, ...]] = {
    "stride": ("s", "stride"),
    "kernel": ("k", "kernel_size", "dw_size", "pool_size"),
    "expansion": ("t", "e", "mlp_ratio", "hidden", "ratio"),
    "se": ("use_se", "se_ratio"),
    "activation": ("act", "use_hs", "relu"),
}
PARTS = ("stem", "backbone", "neck", "head")


def _fmt(v: Any) -> str:
    """Deterministic short text of an argument value."""
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_fmt(x) for x in v) + "]"
    return str(v)


def shape_text(shapes: list[tuple[int, ...]] | tuple[tuple[int, ...], ...]) -> str:
    """``1x128x20x20`` for one input, ``1x64x20x20+1x64x20x20`` for a list input."""
    return "+".join("x".join(str(d) for d in s) for s in shapes)


def structure_digest(module: nn.Module) -> str:
    """8 hex digits over the sub-module types and parameter/buffer shapes of ``module``."""
    h = hashlib.sha1()
    for name, m in module.named_modules():
        shapes = [tuple(p.shape) for p in m._parameters.values() if p is not None]
        shapes += [tuple(b.shape) for b in m._buffers.values() if b is not None]
        h.update(f"{name}:{type(m).__name__}:{shapes};".encode())
    return h.hexdigest()[:8]


def bound_args(cls: type, args: list[Any], module: nn.Module | None = None) -> dict[str, Any]:
    """Constructor arguments of ``cls`` bound by name with defaults applied (anchors reduced to a shape)."""
    try:
        sig = inspect.signature(cls.__init__)
        bound = sig.bind(None, *args)
        bound.apply_defaults()
        out = dict(list(bound.arguments.items())[1:])
    except (TypeError, ValueError):
        out = {f"arg{i}": a for i, a in enumerate(args)}
    for k, v in list(out.items()):
        if k in ("args", "kwargs") and not v:
            del out[k]
        elif k == "anchors":
            anchors = getattr(module, "anchors", None)
            out[k] = "x".join(str(d) for d in anchors.shape) if isinstance(anchors, torch.Tensor) else _fmt(v)
    return out


@dataclass
class Unit:
    """One block instance of a model: what a table entry measures, and the module to measure it with.

    ``path`` is the module path in the model (``layers.4`` or ``layers.4.2`` for the third copy of a stacked
    layer); ``inputs`` a random example input of the captured shape(s) (a list for multi-input layers).
    """

    key: str
    type: str
    layer: int
    part: str
    path: str
    args: dict[str, Any]
    in_shapes: list[tuple[int, ...]]
    out_shape: tuple[int, ...]
    structure: str
    module: nn.Module = field(repr=False)
    multi_input: bool = False

    @property
    def fields(self) -> dict[str, Any]:
        """Readable descriptors: type, c_in, c_out, stride, kernel, expansion, se, activation, input."""
        first = self.in_shapes[0]
        out: dict[str, Any] = {
            "type": self.type,
            "c_in": sum(s[1] for s in self.in_shapes) if len(first) > 1 else None,
            "c_out": self.out_shape[1] if len(self.out_shape) == 4 else None,
        }
        declared = family_fields(self.type)
        for name, params in FIELD_PARAMS.items():
            if name in declared:
                params = (declared[name],)
            out[name] = next((self.args[p] for p in params if p in self.args), None)
        if out["stride"] is None and len(first) == 4 and len(self.out_shape) == 4 and self.out_shape[2]:
            ratio = first[2] / self.out_shape[2]
            out["stride"] = int(ratio) if ratio == int(ratio) else round(ratio, 3)
        out["input"] = "x".join(str(d) for d in first[2:]) if len(first) == 4 else shape_text([first])
        return out

    def example_input(self, seed: int = 0) -> torch.Tensor | list[torch.Tensor]:
        """A fixed random input of the captured shape(s)."""
        g = torch.Generator().manual_seed(seed)
        tensors = [torch.randn(s, generator=g) for s in self.in_shapes]
        return tensors if self.multi_input else tensors[0]


def make_key(type_: str, args: dict[str, Any], in_shapes: list[tuple[int, ...]], structure: str) -> str:
    """The canonical key text (see the module docstring)."""
    arg_text = ",".join(f"{k}={_fmt(v)}" for k, v in args.items())
    return f"{type_}({arg_text})@{shape_text(in_shapes)}#{structure}"


def _part(model: nn.Module, index: int, kind: str) -> str:
    if kind in ("detect", "classify"):
        return "head"
    if index == 0:
        return "stem"
    n_backbone = len((getattr(model, "yaml", None) or {}).get("backbone", []) or [])
    return "backbone" if index < n_backbone else "neck"


def _shapes(obj: Any) -> list[tuple[int, ...]]:
    if isinstance(obj, torch.Tensor):
        return [tuple(obj.shape)]
    if isinstance(obj, (list, tuple)):
        return [s for o in obj for s in _shapes(o)]
    return []


def _unit_modules(model: nn.Module) -> Iterator[tuple[int, str, nn.Module, str, list[Any], str]]:
    """(layer index, path, module, YAML type, bound-arg source list, registry kind) for every unit."""
    info = getattr(model, "layer_info", None)
    layers = getattr(model, "layers", None)
    if info is None or not isinstance(layers, nn.ModuleList):
        raise ConfigError(f"{type(model).__name__} is not a YAML-built model (no .layers / .layer_info); "
                          "latency tables key the layers of models built by latlab.ops.build_model")
    for li, m in zip(info, layers, strict=True):
        try:
            spec = get_block(li.module)
            name, kind, cls = spec.name, spec.kind, spec.cls
        except KeyError:
            name, kind, cls = li.module, "same", type(m)
        if li.n > 1 and isinstance(m, nn.Sequential) and not isinstance(m, cls):
            for j, child in enumerate(m):
                yield li.index, f"layers.{li.index}.{j}", child, name, li.args, kind
        else:
            yield li.index, f"layers.{li.index}", m, name, li.args, kind


def model_units(model: nn.Module, imgsz: int | None = None, *, batch: int = 1) -> list[Unit]:
    """Run one eval-mode forward pass at ``imgsz`` and return the model's units in execution order.

    The model is not changed (hooks are removed, train/eval mode restored).
    """
    if imgsz is None:
        imgsz = int((getattr(model, "yaml", None) or {}).get("imgsz", 640))
    entries = list(_unit_modules(model))
    seen: dict[int, tuple[list[tuple[int, ...]], tuple[int, ...], bool]] = {}

    def hook_for(i: int):
        def hook(_m: nn.Module, args: tuple[Any, ...], out: Any) -> None:
            if i not in seen:
                x = args[0] if len(args) == 1 else list(args)
                seen[i] = (_shapes(x), tuple(_shapes(out)[0]) if _shapes(out) else (), isinstance(x, list))
        return hook

    handles = [m.register_forward_hook(hook_for(i)) for i, (_, _, m, _, _, _) in enumerate(entries)]
    was_training = model.training
    ch = int(getattr(model, "in_channels", 3))
    try:
        model.eval()
        with torch.inference_mode():
            model(torch.zeros(batch, ch, imgsz, imgsz))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    units = []
    for i, (layer, path, m, name, args, kind) in enumerate(entries):
        if i not in seen:
            continue
        in_shapes, out_shape, multi = seen[i]
        try:
            cls = get_block(name).cls
        except KeyError:
            cls = type(m)
        bargs = bound_args(cls, list(args), m)
        digest = structure_digest(m)
        units.append(Unit(make_key(name, bargs, in_shapes, digest), name, layer, _part(model, layer, kind), path,
                          bargs, in_shapes, out_shape, digest, m, multi))
    return units
