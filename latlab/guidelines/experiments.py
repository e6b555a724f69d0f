"""The networks of ShuffleNet V2's guideline experiments G1-G4, and their configurations per table row.

Every network is 10 stacked blocks of plain convolutions (no BatchNorm, no bias; see
``paper.NOTES["plain_convs"]``) at a square input (paper: 56×56):

- **G1** ``g1_network(c1, c2)``: block = 1×1 conv c1→c2 then 1×1 conv c2→c1 (Table 1's channel pairs).
- **G2** ``g2_network(c, g)``: one 1×1 group conv c→c with ``g`` groups per block (Table 2's c).
- **G3** ``g3_network(c, k, parallel)``: the appendix blocks. ``k``-fragment-series = ``k`` 1×1 convs in a
  chain at width ``round(c/√k)`` (the integer whose FLOPs are closest to the 1-fragment block);
  ``k``-fragment-parallel = ``k`` 1×1 convs that all read the block input (``c`` channels) and write
  ``c/k`` channels each, concatenated (``merge="sum"`` gives the alternative reading: ``k`` branches
  c'→c' with c' ≈ c/√k, added). With concatenation the FLOPs equal the 1-fragment block exactly.
- **G4** ``g4_network(c, relu, shortcut)``: ResNet bottleneck, 1×1 c→c/4, 3×3 c/4→c/4, 1×1 c/4→c, ReLU after
  each conv (the last one after the add), identity shortcut; ``c`` = the unit's input/output channels
  (our reading, ``paper.NOTES["g4_c"]``).

:func:`configurations` turns a paper table row, a width multiplier (×1/×2/×4 = the ×1 channels scaled, our
reading) and a platform's channel set ("arm" or "gpu") into a :class:`Config` that builds the network. Where
the printed configuration cannot be built (Table 2, ARM, g=8: c=180 is not divisible by 8) the nearest
buildable one is used and ``Config.note`` says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from latlab.errors import ConfigError
from latlab.guidelines.paper import GUIDELINES, PLATFORMS, TABLES, WIDTHS

BLOCKS = 10


def conv1x1(c_in: int, c_out: int, groups: int = 1) -> nn.Conv2d:
    """A bias-free 1×1 convolution (the paper counts multiply-adds only)."""
    return nn.Conv2d(c_in, c_out, 1, groups=groups, bias=False)


# ------------------------------------------------------------------------------------------- G1
class G1Block(nn.Module):
    """Two 1×1 convs, c1→c2→c1 (Table 1's building block)."""

    def __init__(self, c1: int, c2: int):
        super().__init__()
        self.conv1 = conv1x1(c1, c2)
        self.conv2 = conv1x1(c2, c1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def g1_network(c1: int, c2: int, blocks: int = BLOCKS) -> nn.Sequential:
    return nn.Sequential(*(G1Block(c1, c2) for _ in range(blocks)))


# ------------------------------------------------------------------------------------------- G2
def g2_network(c: int, groups: int, blocks: int = BLOCKS) -> nn.Sequential:
    """``blocks`` 1×1 group convs c→c with ``groups`` groups; c must be divisible by ``groups``."""
    if c % groups:
        raise ConfigError(f"G2: {c} channels cannot be split into {groups} groups (c must be divisible by g)")
    return nn.Sequential(*(conv1x1(c, c, groups) for _ in range(blocks)))


def g2_buildable_channels(c: int, groups: int, target_madds_per_pixel: float) -> int:
    """``c`` itself if divisible by ``groups``, else the multiple of ``groups`` whose c²/g is closest to the
    target (the baseline row's work), the smaller one on a tie."""
    if c % groups == 0:
        return c
    lo = (c // groups) * groups
    candidates = [x for x in (lo, lo + groups) if x > 0]
    return min(candidates, key=lambda x: (abs(x * x / groups - target_madds_per_pixel), x))


# ------------------------------------------------------------------------------------------- G3
def split_channels(c: int, k: int) -> list[int]:
    """``c`` split into ``k`` near-equal integer parts summing to ``c`` (larger parts first)."""
    if k < 1 or c < k:
        raise ConfigError(f"G3: cannot split {c} channels into {k} branches")
    base, extra = divmod(c, k)
    return [base + 1 if i < extra else base for i in range(k)]


def series_width(c: int, k: int) -> int:
    """The integer width w whose ``k`` chained 1×1 convs (k·w²) have FLOPs closest to one c→c conv (c²)."""
    exact = c / math.sqrt(k)
    candidates = {max(1, math.floor(exact)), max(1, math.ceil(exact))}
    return min(candidates, key=lambda w: (abs(k * w * w - c * c), w))


class SeriesBlock(nn.Module):
    """``k`` 1×1 convs w→w in a chain (k-fragment-series; k=1 is the 1-fragment block)."""

    def __init__(self, width: int, k: int):
        super().__init__()
        self.convs = nn.Sequential(*(conv1x1(width, width) for _ in range(k)))
        self.fragments = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


class ParallelBlock(nn.Module):
    """``k`` 1×1 convs reading the same input, merged by concatenation or by a sum (k-fragment-parallel)."""

    def __init__(self, c: int, k: int, merge: str = "concat"):
        super().__init__()
        if merge not in ("concat", "sum"):
            raise ConfigError(f"G3: merge must be 'concat' or 'sum', got '{merge}'")
        self.merge = merge
        self.fragments = k
        outs = split_channels(c, k) if merge == "concat" else [c] * k
        self.branches = nn.ModuleList(conv1x1(c, o) for o in outs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = [b(x) for b in self.branches]
        if self.merge == "concat":
            return torch.cat(ys, 1)
        out = ys[0]
        for y in ys[1:]:
            out = out + y
        return out


def g3_width(c: int, fragments: int, parallel: bool, merge: str = "concat") -> int:
    """Channel count of the stacked tensors for a G3 structure with the FLOPs of a 1-fragment block at c."""
    if parallel and merge == "concat":
        return c
    return series_width(c, fragments)


def g3_network(c: int, fragments: int, parallel: bool, blocks: int = BLOCKS, merge: str = "concat"
               ) -> nn.Sequential:
    """Appendix Fig. 1 block, stacked: ``c`` is the 1-fragment channel count; widths adjusted for FLOPs."""
    width = g3_width(c, fragments, parallel, merge)
    if parallel:
        return nn.Sequential(*(ParallelBlock(width, fragments, merge) for _ in range(blocks)))
    return nn.Sequential(*(SeriesBlock(width, fragments) for _ in range(blocks)))


# ------------------------------------------------------------------------------------------- G4
class Bottleneck(nn.Module):
    """ResNet bottleneck without BatchNorm: 1×1 c→c/4, 3×3 c/4→c/4, 1×1 c/4→c; ReLU and shortcut optional."""

    expansion = 4

    def __init__(self, c: int, relu: bool = True, shortcut: bool = True):
        super().__init__()
        mid = c // self.expansion
        if mid < 1 or c % self.expansion:
            raise ConfigError(f"G4: c={c} must be a positive multiple of {self.expansion} (bottleneck c/4)")
        self.conv1 = conv1x1(c, mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1, bias=False)
        self.conv3 = conv1x1(mid, c)
        self.relu = relu
        self.shortcut = shortcut
        self.act = nn.ReLU(inplace=True) if relu else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.conv1(x))
        out = self.act(self.conv2(out))
        out = self.conv3(out)
        if self.shortcut:
            out = out + x
        return self.act(out)


def g4_network(c: int, relu: bool = True, shortcut: bool = True, blocks: int = BLOCKS) -> nn.Sequential:
    return nn.Sequential(*(Bottleneck(c, relu, shortcut) for _ in range(blocks)))


# -------------------------------------------------------------------------------- configurations
@dataclass
class Config:
    """One row of one guideline table at one width multiplier, on one platform's channel set.

    ``printed`` is the paper's ×1 configuration scaled by ``width``; ``spec`` is what is built (equal to
    ``printed`` unless ``exact`` is False, in which case ``note`` says what changed and why).
    """

    guideline: str
    row: str
    key: float
    width: int
    platform: str
    spec: dict[str, Any]
    printed: dict[str, Any]
    in_channels: int
    exact: bool = True
    note: str = ""
    merge: str = "concat"
    _factory: Callable[[], nn.Module] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        return f"{self.guideline} {self.row} ×{self.width}"

    @property
    def is_baseline(self) -> bool:
        return self.row == TABLES[self.guideline].baseline.label

    def build(self) -> nn.Module:
        """A freshly initialised network (eval mode)."""
        assert self._factory is not None
        return self._factory().eval()

    @property
    def short(self) -> str:
        """A compact label of what is built: ``22→44``, ``c90 g2``, ``45×2`` (width × convs in series),
        ``4×16 cat`` (branches × their output channels), ``c32/8`` (unit / bottleneck channels)."""
        s = self.spec
        if self.guideline == "G1":
            return f"{s['c1']}→{s['c2']}"
        if self.guideline == "G2":
            return f"c{s['c']} g{s['g']}"
        if self.guideline == "G3":
            if s["parallel"]:
                branch = s.get("branch_out", str(s["width"])).split("/")[0]
                return f"{s['fragments']}×{branch} {'cat' if s['merge'] == 'concat' else 'sum'}"
            return f"{s['width']}×{s['fragments']}"
        return f"c{s['c']}/{s['mid']}"

    def describe(self, which: str = "spec") -> str:
        d = self.spec if which == "spec" else self.printed
        return ", ".join(f"{k}={v}" for k, v in d.items())


def check_guideline(name: str) -> str:
    g = name.strip().upper()
    if g not in TABLES:
        raise ConfigError(f"unknown guideline '{name}': expected one of {', '.join(GUIDELINES)}")
    return g


def check_width(width: int) -> int:
    if width not in WIDTHS:
        raise ConfigError(f"width multiplier {width} is not allowed: expected one of "
                          f"{', '.join(map(str, WIDTHS))} (the paper's ×1/×2/×4)")
    return int(width)


def check_platform(platform: str) -> str:
    if platform not in PLATFORMS:
        raise ConfigError(f"unknown channel set '{platform}': expected one of {', '.join(PLATFORMS)}")
    return platform


def _g1(row: Any, w: int, p: str, blocks: int) -> Config:
    c1, c2 = row.channels[p]["c1"] * w, row.channels[p]["c2"] * w
    spec = {"c1": c1, "c2": c2}
    return Config("G1", row.label, row.key, w, p, spec, dict(spec), c1,
                  _factory=lambda: g1_network(c1, c2, blocks))


def _g2(row: Any, w: int, p: str, blocks: int) -> Config:
    base = TABLES["G2"].baseline.channels[p]
    target = (base["c"] * w) ** 2 / base["g"]
    printed = {"c": row.channels[p]["c"] * w, "g": row.channels[p]["g"]}
    c = g2_buildable_channels(printed["c"], printed["g"], target)
    exact = c == printed["c"]
    note = ""
    if not exact:
        pc, g = printed["c"], printed["g"]
        note = (f"printed c={pc} is not divisible by g={g} ({pc}/{g} = {pc / g:g}); built c={c}, the multiple of "
                f"{g} with FLOPs closest to the g=1 row: {c * c / g / target - 1:+.1%} vs g=1 "
                f"(printed: {pc * pc / g / target - 1:+.1%})")
    return Config("G2", row.label, row.key, w, p, {"c": c, "g": printed["g"]}, printed, c, exact, note,
                  _factory=lambda: g2_network(c, printed["g"], blocks))


def _g3(row: Any, w: int, p: str, blocks: int, merge: str) -> Config:
    c = row.channels[p]["c"] * w
    k, parallel = row.channels[p]["fragments"], row.channels[p]["parallel"]
    width = g3_width(c, k, parallel, merge)
    spec: dict[str, Any] = {"c": c, "width": width, "fragments": k, "parallel": parallel}
    note = ""
    if parallel and merge == "concat":
        spec["branch_out"] = "/".join(map(str, split_channels(c, k)))
    elif k > 1:
        work, base = k * width * width, c * c
        if work != base:
            note = (f"width {width} ≈ {c}/√{k} = {c / math.sqrt(k):.2f}: FLOPs {work / base - 1:+.2%} vs "
                    "1-fragment (nearest integer width)")
    if parallel:
        spec["merge"] = merge
    printed = {"c": c, "fragments": k, "parallel": parallel}
    return Config("G3", row.label, row.key, w, p, spec, printed, width, True, note, merge,
                  _factory=lambda: g3_network(c, k, parallel, blocks, merge))


def _g4(row: Any, w: int, p: str, blocks: int) -> Config:
    c = row.channels[p]["c"] * w
    relu, shortcut = row.channels[p]["relu"], row.channels[p]["shortcut"]
    spec = {"c": c, "mid": c // Bottleneck.expansion, "relu": relu, "shortcut": shortcut}
    printed = {"c": c, "relu": relu, "shortcut": shortcut}
    return Config("G4", row.label, row.key, w, p, spec, printed, c,
                  _factory=lambda: g4_network(c, relu, shortcut, blocks))


def configurations(guideline: str, width: int = 1, platform: str = "arm", *, blocks: int = BLOCKS,
                   merge: str = "concat") -> list[Config]:
    """The rows of one guideline table at ``width`` on ``platform``'s channel set, baseline first."""
    g = check_guideline(guideline)
    w = check_width(width)
    p = check_platform(platform)
    if merge not in ("concat", "sum"):
        raise ConfigError(f"G3 merge must be 'concat' or 'sum', got '{merge}'")
    out = []
    for row in TABLES[g].rows:
        if g == "G1":
            out.append(_g1(row, w, p, blocks))
        elif g == "G2":
            out.append(_g2(row, w, p, blocks))
        elif g == "G3":
            out.append(_g3(row, w, p, blocks, merge))
        else:
            out.append(_g4(row, w, p, blocks))
    return out
