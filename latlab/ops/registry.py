"""One registry of named blocks, the only way a model YAML can reach a Python class.

Modelled on timm's ``_registry``: a decorator adds a class under its name (and aliases); the YAML builder
looks names up here and nowhere else, so a config can never reach an arbitrary attribute or ``eval``.
Each entry also says how YOLOv5's ``parse_model`` treats the block's arguments (``kind``):

- ``"channels"``: ``args = [c2, *rest]`` in YAML; the builder inserts ``c1`` (input channels) first and
  scales ``c2`` by ``width_multiple`` (rounded up to the model's channel divisor).
- ``"repeat"``: like ``"channels"``, and the layer's ``number`` (after ``depth_multiple``) is passed as
  the third argument ``n`` instead of stacking copies (YOLOv5's C3 family).
- ``"same"``: output channels equal input channels; ``args`` are passed as written (pooling, upsample).
- ``"bn"``: ``nn.BatchNorm2d``-like, gets ``[c1]``.
- ``"concat"``: output channels are the sum of the inputs.
- ``"detect"``: the detection head; receives ``nc``, anchors and the input channel list.
- ``"classify"``: a classification head; ``args = [nc, ...]``, gets ``c1`` first.

Searchable block families (:class:`latlab.ops.family.SearchFamily`) are registered here too, by
:func:`register_family` in the block file that defines their module; :func:`get_family` is the only lookup.
``latlab/ops/__init__.py`` imports :mod:`latlab.ops.blocks`, so importing this module fills the registry.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from torch import nn

from latlab.errors import ConfigError
from latlab.ops.family import SearchFamily

KINDS = ("channels", "repeat", "same", "bn", "concat", "detect", "classify")


@dataclass(frozen=True)
class BlockSpec:
    """What the registry knows about one block."""

    name: str
    cls: type[nn.Module]
    kind: str
    family: str
    aliases: tuple[str, ...] = field(default=())

    @property
    def doc(self) -> str:
        return (self.cls.__doc__ or "").strip().splitlines()[0] if self.cls.__doc__ else ""


_REGISTRY: dict[str, BlockSpec] = {}
_ALIASES: dict[str, str] = {}
_FAMILIES: dict[str, SearchFamily] = {}


def register_block(
    name: str | None = None, *, kind: str = "channels", family: str = "yolo", aliases: tuple[str, ...] = ()
) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: register ``cls`` under ``name`` (default: the class name) and ``aliases``."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        key = name or cls.__name__
        if key in _REGISTRY or key in _ALIASES:
            raise ValueError(f"block name {key!r} is already registered")
        spec = BlockSpec(key, cls, kind, family, tuple(aliases))
        _REGISTRY[key] = spec
        for alias in aliases:
            if alias in _REGISTRY or alias in _ALIASES:
                raise ValueError(f"block alias {alias!r} is already registered")
            _ALIASES[alias] = key
        return cls

    return deco


def register_external(name: str, cls: type[nn.Module], *, kind: str, family: str = "torch",
                      aliases: tuple[str, ...] = ()) -> None:
    """Register a class we do not own (e.g. ``nn.Upsample``) under a YAML spelling."""
    register_block(name, kind=kind, family=family, aliases=aliases)(cls)


def get_block(name: str) -> BlockSpec:
    """Look a block up by name or alias; raises ``KeyError`` with close matches in the message."""
    key = _ALIASES.get(name, name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    close = difflib.get_close_matches(name, list(_REGISTRY) + list(_ALIASES), n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    raise KeyError(f"unknown module {name!r}{hint}; see `latlab blocks` for the registered names")


def list_blocks(family: str | None = None) -> list[BlockSpec]:
    """All registered blocks, optionally of one family, sorted by family and name."""
    specs = [s for s in _REGISTRY.values() if family is None or s.family == family]
    return sorted(specs, key=lambda s: (s.family, s.name))


def unregister_block(name: str) -> None:
    """Remove a block and its aliases (for tests that register a toy block); unknown names raise KeyError."""
    spec = _REGISTRY.pop(name)
    for alias in spec.aliases:
        _ALIASES.pop(alias, None)


# ---------------------------------------------------------------------------------------- search families
def register_family(family: SearchFamily) -> SearchFamily:
    """Make ``family`` searchable; its ``module`` must already be a registered block (define the class first)."""
    if family.name in _FAMILIES:
        raise ValueError(f"search family {family.name!r} is already registered")
    if family.module not in _REGISTRY and family.module not in _ALIASES:
        raise ValueError(f"search family {family.name!r}: its module {family.module!r} is not a registered block; "
                         "register the block class before its family")
    _FAMILIES[family.name] = family
    return family


def unregister_family(name: str) -> None:
    """Remove a search family (for tests that register a toy family); unknown names raise KeyError."""
    del _FAMILIES[name]


def get_family(name: str) -> SearchFamily:
    """The search family called ``name``; an unknown name raises ``ConfigError`` listing the known ones."""
    family = _FAMILIES.get(name) if isinstance(name, str) else None
    if family is None:
        raise ConfigError(f"unknown block family {name!r}; known families: {', '.join(sorted(_FAMILIES))}")
    return family


def list_families() -> list[SearchFamily]:
    """All registered search families, sorted by name."""
    return sorted(_FAMILIES.values(), key=lambda f: f.name)


def family_fields(module: str) -> Mapping[str, str]:
    """Descriptor → constructor parameter declared by the family whose module is ``module`` (empty if none)."""
    for family in _FAMILIES.values():
        if _ALIASES.get(family.module, family.module) == module:
            return family.fields
    return {}
