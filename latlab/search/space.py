"""Search space: a YAML file of choices → sampled points → ordinary model YAML dicts.

A space (see ``latlab/configs/search/default_space.yaml``) lists, for a YOLOv5-style detector, the stem
types and widths, per backbone stage (P3, P4, P5) the block family, depth, width, kernel, expansion, SE and
activation, whether SPPF closes the backbone, and the neck width and C3 depth. A *point* is a flat dict of
one value per choice (``"P3.block": "mobilenetv3"``); :meth:`SearchSpace.decode` turns it into a
:class:`Candidate`: the model YAML dict (which ``build_model`` and ``latlab build`` rebuild), a compact
architecture string and a hash of the architecture.

Every choice is sampled for every point (a flat space), even options the chosen block ignores: NSGA-II
crosses over only parameters that all trials share, and a flat space keeps them all shared. The architecture
hash covers only the emitted model YAML, so points that differ in ignored options share one cached result.

What each block family emits, which options it uses, which widths it accepts and its short tag come from
its :class:`latlab.ops.family.SearchFamily`, registered next to its blocks (``latlab/ops/blocks/``).

Invalid spaces are rejected when loaded, before anything is built or timed: unknown block families, stems
or activations, widths that are not multiples of ``channel_divisor``, widths a family's rule refuses (odd
for ShuffleNetV2, not divisible by 4 for Ghost bottlenecks), even kernels, and stems whose stride cannot
bring P3/P4/P5 to strides 8/16/32.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from latlab.errors import ConfigError, SearchError
from latlab.ops.activations import ACTIVATION_NAMES
from latlab.ops.family import ACT_SHORT as ACT_SHORT  # re-exported: arch-string spelling of activations
from latlab.ops.family import Stage
from latlab.ops.registry import get_family, list_families
from latlab.validate import (
    MAX_CHANNELS,
    MAX_COUNT,
    MAX_LIST,
    MAX_MULTIPLE,
    MAX_REPEAT,
    Limit,
    length,
    positive_float,
)
from latlab.yamlio import read_yaml

DEFAULT_SPACE = Path(__file__).resolve().parent.parent / "configs" / "search" / "default_space.yaml"

# Output stride of each stem (a stride-2 stem gets a 3x3 s2 Conv after it so P2 sits at stride 4).
STEM_STRIDE = {"Conv": 2, "CBRM": 4, "StemBlock": 4, "conv_bn_hswish": 2}


class _FamilyView(Mapping[str, Any]):
    """Read-only live view: family name → one attribute of its registered descriptor."""

    def __init__(self, attr: str) -> None:
        self._attr = attr

    def __getitem__(self, name: str) -> Any:
        try:
            return getattr(get_family(name), self._attr)
        except ConfigError:
            raise KeyError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter([f.name for f in list_families()])

    def __len__(self) -> int:
        return len(list_families())


# Views of the registered families (``latlab.ops.registry.list_families``), kept for callers of the old tables.
BLOCKS: Mapping[str, str] = _FamilyView("module")        # family → YAML module its stage rows use
BLOCK_OPTIONS: Mapping[str, tuple[str, ...]] = _FamilyView("knobs")  # family → per-stage options it uses
SHORT: Mapping[str, str] = _FamilyView("short")          # family → tag in architecture strings
STAGE_NAMES = ("P3", "P4", "P5")
STAGE_KEYS = ("block", "depth", "width", "kernel", "expansion", "se", "act")
TOP_KEYS = {"name", "nc", "channel_divisor", "anchors", "stem", "stages", "sppf", "neck", "description"}
DEFAULT_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]

ORDINAL, CATEGORICAL = "ordinal", "categorical"
ENCODINGS = (ORDINAL, CATEGORICAL)


def is_ordinal(values: list[Any]) -> bool:
    """True for a choice list of two or more numbers (booleans are not numbers here)."""
    return len(values) > 1 and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


@dataclass(frozen=True)
class Candidate:
    """One decoded point: ``cfg`` is a model YAML dict, ``arch`` a compact string, ``arch_hash`` its hash."""

    point: dict[str, Any]
    cfg: dict[str, Any]
    arch: str
    arch_hash: str
    strides: tuple[int, ...] = (8, 16, 32)


@dataclass
class SearchSpace:
    """A loaded, validated search space. ``choices`` maps each flat parameter name to its list of values."""

    name: str
    nc: int
    channel_divisor: int
    anchors: list[list[int]]
    choices: dict[str, list[Any]]
    source: str = "<dict>"
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def space_hash(self) -> str:
        """Hash of the choices (a study refuses to continue with a different space)."""
        blob = json.dumps({"choices": self.choices, "nc": self.nc, "div": self.channel_divisor,
                           "anchors": self.anchors}, sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def choices_hash(self) -> str:
        """Hash of the choices without the class count: the same space on data with other classes (a
        reference measured with nc 10 still describes a study with nc 4, data apart)."""
        blob = json.dumps({"choices": self.choices, "div": self.channel_divisor, "anchors": self.anchors},
                          sort_keys=True)
        return hashlib.sha1(blob.encode()).hexdigest()[:12]

    @property
    def size(self) -> int:
        """Number of distinct points (ignored options included)."""
        return math.prod(len(v) for v in self.choices.values())

    def suggest(self, trial: Any, encoding: str = ORDINAL) -> Candidate:
        """Sample a point through an Optuna trial and decode it.

        With ``encoding="ordinal"`` (what new studies use), a choice list of two or more numbers (widths,
        depths, kernel, expansion) becomes an integer parameter holding the value's *position* in the sorted
        list, so model-based samplers know that 64 lies between 48 and 96 (it lowers the GP sampler's regret:
        benchmarks/README.md#search-regret); everything else is categorical. ``"categorical"`` is how
        studies made before it sampled.
        ``trial.params`` then hold positions; the decoded values are in the candidate's ``point``."""
        if encoding not in ENCODINGS:
            raise SearchError(f"parameter encoding {encoding!r}: expected one of {', '.join(ENCODINGS)}")
        point = {}
        for name, values in self.choices.items():
            if encoding == ORDINAL and is_ordinal(values):
                ordered = sorted(values)
                point[name] = ordered[trial.suggest_int(name, 0, len(ordered) - 1)]
            else:
                point[name] = trial.suggest_categorical(name, list(values))
        return self.decode(point)

    def random_point(self, rng: Any) -> dict[str, Any]:
        """A uniformly random point from a ``numpy.random.Generator``."""
        return {name: values[int(rng.integers(len(values)))] for name, values in self.choices.items()}

    def check_point(self, point: Mapping[str, Any]) -> None:
        """Raise ``SearchError`` naming the parameter when ``point`` is not a point of this space."""
        missing = [k for k in self.choices if k not in point]
        if missing:
            raise SearchError(f"{self.source}: point lacks parameter(s) {', '.join(missing)}")
        extra = [k for k in point if k not in self.choices]
        if extra:
            raise SearchError(f"{self.source}: point has unknown parameter(s) {', '.join(extra)}")
        for k, values in self.choices.items():
            if point[k] not in values:
                raise SearchError(f"{self.source}: parameter '{k}' = {point[k]!r} is not one of {values}")

    def decode(self, point: Mapping[str, Any]) -> Candidate:
        """The model YAML dict, architecture string and hash of ``point`` (checked against the space)."""
        self.check_point(point)
        return _decode(self, dict(point))


# ---------------------------------------------------------------------------------------------- loading
def load_space(space: str | Path | Mapping[str, Any] | None = None) -> SearchSpace:
    """Load and validate a space from a YAML path, a dict, or the shipped default (``None``)."""
    if space is None:
        space = DEFAULT_SPACE
    if isinstance(space, Mapping):
        raw, source = deepcopy(dict(space)), "<dict>"
    else:
        path = Path(space)
        raw = read_yaml(path, what="search space file")
        source = str(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a search space must be a mapping with 'stem', 'stages' and 'neck'")
    return _validate(raw, source)


MAX_KERNEL = Limit("kernel size", 31, "LATLAB_MAX_KERNEL")


def _list(value: Any, where: str, source: str) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    length(values, f"{source}: '{where}'", limit=MAX_LIST)
    if not values:
        raise ConfigError(f"{source}: '{where}' is an empty list; give at least one choice")
    if len(set(map(repr, values))) != len(values):
        raise ConfigError(f"{source}: '{where}' lists a value twice: {values}")
    return values


def _ints(value: Any, where: str, source: str, low: int = 1, limit: Limit = MAX_COUNT) -> list[int]:
    values = _list(value, where, source)
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ConfigError(f"{source}: '{where}' must be integers >= {low}, got {v!r}")
        if v > limit.value:
            raise ConfigError(f"{source}: '{where}' value {v} is too large: {limit.hint()}")
    return values


def _validate(raw: dict[str, Any], source: str) -> SearchSpace:
    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {sorted(unknown)}; expected {sorted(TOP_KEYS)}")
    for key in ("stem", "stages", "neck"):
        if key not in raw:
            raise ConfigError(f"{source}: missing top-level key '{key}'")
    nc = raw.get("nc", 10)
    div = raw.get("channel_divisor", 8)
    for key, v, limit in (("nc", nc, MAX_COUNT), ("channel_divisor", div, MAX_CHANNELS)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ConfigError(f"{source}: '{key}' must be an integer >= 1, got {v!r}")
        if v > limit.value:
            raise ConfigError(f"{source}: '{key}' = {v} is too large: {limit.hint()}")
    anchors = raw.get("anchors", DEFAULT_ANCHORS)
    if not (isinstance(anchors, list) and len(anchors) == 3 and all(isinstance(a, list) and len(a) % 2 == 0
                                                                     and a for a in anchors)):
        raise ConfigError(f"{source}: 'anchors' must be three lists of pixel pairs (P3, P4, P5)")
    for level in anchors:
        length(level, f"{source}: 'anchors' level", limit=MAX_LIST)
        for v in level:
            positive_float(v, f"{source}: 'anchors' sizes (pixels)")
    choices: dict[str, list[Any]] = {}

    stem = raw["stem"]
    if not isinstance(stem, dict) or set(stem) - {"type", "width"} or "type" not in stem or "width" not in stem:
        raise ConfigError(f"{source}: 'stem' must be a mapping with 'type' and 'width' lists")
    types = _list(stem["type"], "stem.type", source)
    for t in types:
        if t not in STEM_STRIDE:
            raise ConfigError(f"{source}: stem.type {t!r} is not a known stem; expected one of "
                              f"{sorted(STEM_STRIDE)} (stride 2 or 4, so P3/P4/P5 land on strides 8/16/32)")
    choices["stem.type"] = types
    choices["stem.width"] = _check_widths(_ints(stem["width"], "stem.width", source, limit=MAX_CHANNELS),
                                          "stem.width", div, source)

    stages = raw["stages"]
    if not isinstance(stages, list) or len(stages) != 3:
        raise ConfigError(f"{source}: 'stages' must list exactly three stages (P3, P4, P5: strides 8, 16, 32), "
                          f"got {len(stages) if isinstance(stages, list) else type(stages).__name__}")
    for i, st in enumerate(stages):
        where = f"stages[{i}]"
        if not isinstance(st, dict):
            raise ConfigError(f"{source}: {where} must be a mapping")
        name = st.get("name", STAGE_NAMES[i])
        if name != STAGE_NAMES[i]:
            raise ConfigError(f"{source}: {where}.name must be {STAGE_NAMES[i]!r} (stages are P3, P4, P5 in order)")
        bad = set(st) - {"name", *STAGE_KEYS}
        if bad:
            raise ConfigError(f"{source}: {where} has unknown key(s) {sorted(bad)}; expected {list(STAGE_KEYS)}")
        for key in ("block", "depth", "width"):
            if key not in st:
                raise ConfigError(f"{source}: {where} ({name}) is missing '{key}'")
        blocks = _list(st["block"], f"{name}.block", source)
        known = sorted(f.name for f in list_families())
        for b in blocks:
            if b not in known:
                raise ConfigError(f"{source}: {name}.block {b!r} is not a known block family; expected one of "
                                  f"{known}")
        widths = _check_widths(_ints(st["width"], f"{name}.width", source, limit=MAX_CHANNELS), f"{name}.width",
                               div, source)
        for b in blocks:
            for w in widths:
                reason = block_width_problem(b, w)
                if reason:
                    raise ConfigError(f"{source}: {name}: block {b!r} with width {w}: {reason}")
        choices[f"{name}.block"] = blocks
        choices[f"{name}.depth"] = _ints(st["depth"], f"{name}.depth", source, limit=MAX_REPEAT)
        choices[f"{name}.width"] = widths
        kernels = _ints(st.get("kernel", [3]), f"{name}.kernel", source, limit=MAX_KERNEL)
        for k in kernels:
            if k % 2 == 0:
                raise ConfigError(f"{source}: {name}.kernel {k} is even; depthwise kernels must be odd (3, 5, 7)")
        choices[f"{name}.kernel"] = kernels
        exps = _list(st.get("expansion", [4]), f"{name}.expansion", source)
        for e in exps:
            if not isinstance(e, int | float) or isinstance(e, bool) or not math.isfinite(e) or e < 1:
                raise ConfigError(f"{source}: {name}.expansion must be finite numbers >= 1, got {e!r}")
            if e > MAX_MULTIPLE.value:
                raise ConfigError(f"{source}: {name}.expansion {e:g} is too large: {MAX_MULTIPLE.hint()}")
        choices[f"{name}.expansion"] = exps
        ses = _list(st.get("se", [False]), f"{name}.se", source)
        if any(not isinstance(s, bool) for s in ses):
            raise ConfigError(f"{source}: {name}.se must be true/false values, got {ses}")
        choices[f"{name}.se"] = ses
        acts = _list(st.get("act", ["relu"]), f"{name}.act", source)
        for a in acts:
            if not isinstance(a, str) or a.lower() not in ACTIVATION_NAMES:
                raise ConfigError(f"{source}: {name}.act {a!r} is not an activation name; expected one of "
                                  f"{', '.join(ACTIVATION_NAMES)}")
        choices[f"{name}.act"] = acts

    sppf = _list(raw.get("sppf", [True]), "sppf", source)
    if any(not isinstance(s, bool) for s in sppf):
        raise ConfigError(f"{source}: 'sppf' must be true/false values, got {sppf}")
    choices["sppf"] = sppf
    neck = raw["neck"]
    if not isinstance(neck, dict) or set(neck) - {"width", "depth"} or "width" not in neck:
        raise ConfigError(f"{source}: 'neck' must be a mapping with 'width' (and optional 'depth') lists")
    choices["neck.width"] = _check_widths(_ints(neck["width"], "neck.width", source, limit=MAX_CHANNELS),
                                          "neck.width", div, source)
    choices["neck.depth"] = _ints(neck.get("depth", [1]), "neck.depth", source, limit=MAX_REPEAT)
    return SearchSpace(name=str(raw.get("name", "space")), nc=nc, channel_divisor=div, anchors=anchors,
                       choices=choices, source=source, raw=raw)


def _check_widths(widths: list[int], where: str, div: int, source: str) -> list[int]:
    for w in widths:
        if w % div:
            raise ConfigError(f"{source}: {where} {w} is not a multiple of channel_divisor {div} (the builder "
                              "would round it up, so the sampled architecture would not be the one built)")
    return widths


def block_width_problem(block: str, width: int) -> str | None:
    """Why ``block`` cannot have ``width`` output channels, or None when it can (unknown family: ConfigError)."""
    return get_family(block).width_problem(width)


# --------------------------------------------------------------------------------------------- decoding
def stage_of(point: Mapping[str, Any], name: str, c_in: int) -> Stage:
    """The :class:`Stage` that ``point`` chooses for stage ``name`` (``"P3"``...) fed by ``c_in`` channels."""
    return Stage(c_in=c_in, width=point[f"{name}.width"], depth=point[f"{name}.depth"],
                 kernel=point[f"{name}.kernel"], expansion=point[f"{name}.expansion"], se=point[f"{name}.se"],
                 act=point[f"{name}.act"])


def _decode(space: SearchSpace, p: dict[str, Any]) -> Candidate:
    stem_type, stem_w = p["stem.type"], p["stem.width"]
    backbone: list[list[Any]] = []
    if stem_type == "Conv":
        backbone.append([-1, 1, "Conv", [stem_w, 6, 2, 2]])
    elif stem_type == "conv_bn_hswish":
        backbone.append([-1, 1, "conv_bn_hswish", [stem_w, 2]])
    else:
        backbone.append([-1, 1, stem_type, [stem_w]])
    stride = STEM_STRIDE[stem_type]
    if stride == 2:
        backbone.append([-1, 1, "Conv", [stem_w, 3, 2]])
        stride = 4
    c = stem_w
    outs: list[int] = []
    strides: list[int] = []
    tags = [f"{stem_type}{stem_w}"]
    for name in STAGE_NAMES:
        block, st = p[f"{name}.block"], stage_of(p, name, c)
        try:
            family = get_family(block)
        except ConfigError as e:
            raise SearchError(f"{space.source}: {name}: {e}") from None
        reason = family.width_problem(st.width)
        if reason:
            raise SearchError(f"{space.source}: {name}: block {block!r} with width {st.width}: {reason}")
        backbone.extend(family.rows(st))
        stride *= 2
        strides.append(stride)
        outs.append(len(backbone) - 1)
        tags.append(f"{name}:{family.tag(st)}")
        c = st.width
    if strides != [8, 16, 32]:
        raise SearchError(f"{space.source}: stem {stem_type!r} gives P3/P4/P5 strides {strides}, expected [8, 16, 32]")
    if p["sppf"]:
        backbone.append([-1, 1, "SPPF", [c, 5]])
        tags.append("sppf")
    p3, p4 = outs[0], outs[1]
    nw, nd = p["neck.width"], p["neck.depth"]
    b = len(backbone)
    head = [
        [-1, 1, "Conv", [2 * nw, 1, 1]],              # b+0: P5 lateral
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
        [[-1, p4], 1, "Concat", [1]],
        [-1, nd, "C3", [2 * nw, False]],              # b+3
        [-1, 1, "Conv", [nw, 1, 1]],                  # b+4: P4 lateral
        [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
        [[-1, p3], 1, "Concat", [1]],
        [-1, nd, "C3", [nw, False]],                  # b+7: P3 out
        [-1, 1, "Conv", [nw, 3, 2]],
        [[-1, b + 4], 1, "Concat", [1]],
        [-1, nd, "C3", [2 * nw, False]],              # b+10: P4 out
        [-1, 1, "Conv", [2 * nw, 3, 2]],
        [[-1, b + 0], 1, "Concat", [1]],
        [-1, nd, "C3", [4 * nw, False]],              # b+13: P5 out
        [[b + 7, b + 10, b + 13], 1, "Detect", ["nc", "anchors"]],
    ]
    tags.append(f"neck{nw}x{nd}")
    arch = "/".join(tags)
    cfg: dict[str, Any] = {
        "nc": space.nc,
        "depth_multiple": 1.0,
        "width_multiple": 1.0,
        "channel_divisor": space.channel_divisor,
        "anchors": deepcopy(space.anchors),
        "backbone": backbone,
        "head": head,
    }
    h = arch_hash(cfg)
    cfg["meta"] = {"task": "detect", "family": "search", "description": arch,
                   "source": f"latlab search space {space.name} ({space.space_hash}), arch {h}"}
    return Candidate(point=p, cfg=cfg, arch=arch, arch_hash=h, strides=tuple(strides))


def arch_hash(cfg: Mapping[str, Any]) -> str:
    """Hash of what a model YAML builds (rows, nc, anchors, multipliers; ``meta`` and names excluded)."""
    keys = ("nc", "depth_multiple", "width_multiple", "channel_divisor", "anchors", "backbone", "head")
    blob = json.dumps({k: cfg.get(k) for k in keys}, sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def to_yaml(cfg: Mapping[str, Any]) -> str:
    """The model YAML text of a candidate, with rows in YOLOv5's one-row-per-line layout."""
    top = {k: v for k, v in cfg.items() if k not in ("backbone", "head", "anchors")}
    text = yaml.safe_dump(top, sort_keys=False)
    text += "anchors:\n" + "".join(f"  - {json.dumps(a)}\n" for a in cfg["anchors"])
    for part in ("backbone", "head"):
        text += f"{part}:\n" + "".join(f"  - {json.dumps(r)}  # {i}\n"
                                       for i, r in enumerate(cfg[part], start=0 if part == "backbone"
                                                             else len(cfg["backbone"])))
    return text
