"""A searchable block family: one descriptor with everything the search, the regret proxy and the LUT need.

A family (``"mobilenetv3"``) is what a search-space stage chooses; its :class:`SearchFamily` lives in the
block file next to the class it emits and is registered with :func:`latlab.ops.registry.register_family`.
The search space reads the knobs, width rule, YAML rows and short tag from it; the regret benchmark's
latency proxy reads its closed-form cost; the latency-table enumeration reads ``depth_in_block``; the
table keys read ``fields``. Adding a searchable block is then one block file (plus a test).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

KNOBS = ("kernel", "expansion", "se", "act")
"""Per-stage options a family may use; the ones it does not use are ignored when decoding."""
ACT_SHORT = {"relu": "re", "hardswish": "hs", "silu": "si"}
"""Activation spellings in architecture strings (other names are written as they are)."""
FIELD_NAMES = ("stride", "kernel", "expansion", "se", "activation")
"""Readable unit descriptors a family may map to constructor parameters (see :mod:`latlab.lut.keys`)."""


@dataclass(frozen=True)
class Stage:
    """One backbone stage as the search samples it: ``depth`` blocks from ``c_in`` to ``width`` channels,
    the first at stride 2, with the stage's kernel, expansion, SE and activation choices."""

    c_in: int
    width: int
    depth: int
    kernel: int = 3
    expansion: float = 4
    se: bool = False
    act: str = "relu"


@dataclass
class CostTally:
    """Running totals of the regret benchmark's closed-form latency proxy (``latlab.search.regret``)."""

    madds: float = 0.0
    act_bytes: float = 0.0
    params: float = 0.0
    layers: int = 0

    def conv(self, cin: float, cout: float, k: int, hw: float, groups: float = 1.0) -> None:
        """Add one k×k convolution (+ BN) of ``cin`` → ``cout`` channels over an ``hw``-pixel output."""
        self.madds += hw * cout * cin / groups * k * k
        self.params += cout * cin / groups * k * k + 2 * cout
        self.act_bytes += 4 * hw * (cin + cout)
        self.layers += 1

    def traffic(self, nbytes: float) -> None:
        """Add activation traffic that is not a convolution (e.g. an SE gate's multiply)."""
        self.act_bytes += nbytes


BlockArgs = Callable[[Stage, int, int], list[Any]]
"""(stage, block input channels, stride) → the YAML args of one block (after the builder's ``c1``)."""
BlockCost = Callable[[CostTally, Stage, float, int, float, float], None]
"""(tally, stage, block input channels, stride, input pixels, output pixels) → adds one block's cost."""
StageRows = Callable[[Stage], list[list[Any]]]
StageCost = Callable[[CostTally, Stage, float], None]
"""(tally, stage, input pixels) → adds the whole stage's cost (the stage ends at a quarter of the pixels)."""


def any_width(width: int) -> str | None:
    """Width rule of a family that accepts every width."""
    return None


@dataclass(frozen=True)
class SearchFamily:
    """What the search space, the LUT enumeration/keys and the regret proxy need about one family.

    A stage is either a stack of ``module`` blocks (give ``block_args`` and ``block_cost``: the first block
    strides by 2 from ``c_in``, the ``depth - 1`` others are one YAML row with ``number = depth - 1``), or
    something else (give ``stage_rows`` and ``stage_cost``, as C3 does: a stride-2 Conv and one C3 of
    ``depth`` bottlenecks).

    - ``knobs``: which of ``kernel``/``expansion``/``se``/``act`` the family uses (the others are ignored,
      so points differing only there share one architecture);
    - ``width_rule``: why a width is impossible (a reason string) or None;
    - ``depth_in_block``: the stage depth is an argument of one block (C3's ``n``), so each depth choice is
      a distinct latency-table unit; otherwise deeper stages only add copies of the same unit;
    - ``se_bonus``: accuracy-proxy bonus of a stage with SE on (regret benchmark only);
    - ``fields``: descriptor (``stride``, ``kernel``, ...) → constructor parameter of ``module``, where the
      class does not follow the usual names (``s``/``stride``, ``k``, ``t``/``e``, ``use_se``, ``act``).
    """

    name: str
    module: str
    short: str
    knobs: tuple[str, ...] = ()
    block_args: BlockArgs | None = None
    block_cost: BlockCost | None = None
    stage_rows: StageRows | None = None
    stage_cost: StageCost | None = None
    width_rule: Callable[[int], str | None] = any_width
    depth_in_block: bool = False
    se_bonus: float = 0.0
    fields: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.module or not self.short:
            raise ValueError("a search family needs a name, a YAML module and a short tag")
        bad = [k for k in self.knobs if k not in KNOBS]
        if bad:
            raise ValueError(f"family {self.name!r}: unknown knob(s) {bad}; expected a subset of {KNOBS}")
        if (self.block_args is None) == (self.stage_rows is None):
            raise ValueError(f"family {self.name!r}: give exactly one of block_args and stage_rows")
        if (self.block_cost is None) == (self.stage_cost is None):
            raise ValueError(f"family {self.name!r}: give exactly one of block_cost and stage_cost")
        bad = [k for k in self.fields if k not in FIELD_NAMES]
        if bad:
            raise ValueError(f"family {self.name!r}: unknown field(s) {bad}; expected a subset of {FIELD_NAMES}")
        object.__setattr__(self, "knobs", tuple(self.knobs))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def width_problem(self, width: int) -> str | None:
        """Why this family cannot have ``width`` output channels, or None when it can."""
        return self.width_rule(width)

    def rows(self, stage: Stage) -> list[list[Any]]:
        """YAML rows of one stage: a stride-2 block to ``width`` channels, then ``depth - 1`` stride-1 ones."""
        if self.stage_rows is not None:
            return self.stage_rows(stage)
        assert self.block_args is not None
        rows = [[-1, 1, self.module, self.block_args(stage, stage.c_in, 2)]]
        if stage.depth > 1:
            rows.append([-1, stage.depth - 1, self.module, self.block_args(stage, stage.width, 1)])
        return rows

    def cost(self, tally: CostTally, stage: Stage, hw: float) -> None:
        """Add the proxy cost of one stage whose input has ``hw`` pixels (its output has ``hw / 4``)."""
        if self.stage_cost is not None:
            self.stage_cost(tally, stage, hw)
            return
        assert self.block_cost is not None
        for i in range(stage.depth):
            stride = 2 if i == 0 else 1
            hw_in, hw_out = hw, hw / (4 if stride == 2 else 1)
            self.block_cost(tally, stage, stage.c_in if i == 0 else stage.width, stride, hw_in, hw_out)
            hw = hw_out

    def tag(self, stage: Stage) -> str:
        """The stage's part of an architecture string, e.g. ``mv3k5e4se-hsx2w64``."""
        tag = self.short
        if "kernel" in self.knobs:
            tag += f"k{stage.kernel}"
        if "expansion" in self.knobs:
            tag += f"e{stage.expansion:g}"
        if "se" in self.knobs and stage.se:
            tag += "se"
        if "act" in self.knobs:
            tag += f"-{ACT_SHORT.get(stage.act, stage.act)}"
        return f"{tag}x{stage.depth}w{stage.width}"
