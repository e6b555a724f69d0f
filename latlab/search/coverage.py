"""Which architectures of a search space a latency table needs: covering points, random samples, all units.

A unit of a stage (:mod:`latlab.lut.keys`) depends on its own options and on its input width (the previous
stage's width), the neck on the three stage widths and its own options, so :func:`covering_points` chains
stage tasks with matching widths instead of taking the full product; :func:`enumerate_space` builds them,
checks a few random points against the set (``verify``), and falls back to random sampling until no new
unit turns up for a space whose parameters do not follow the ``stem.* / P3.* / neck.*`` layout.

:func:`space_source` hands all this to :mod:`latlab.lut` as an :class:`latlab.lut.build.ArchSource`, so the
latency-table code never imports the search (``latlab lut build --space`` wires them in
``latlab/commands/lut.py``).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from latlab.errors import SearchError
from latlab.lut.build import Arch, ArchSource, BlockSet, collect_blocks
from latlab.lut.table import LatencyTable
from latlab.ops.family import KNOBS
from latlab.ops.registry import get_family
from latlab.search.space import STAGE_KEYS, STAGE_NAMES, SearchSpace, load_space

SpaceLike = SearchSpace | str | Path | dict[str, Any] | None


def _space(space: SpaceLike) -> SearchSpace:
    return space if isinstance(space, SearchSpace) else load_space(space)


def _tasks_for_stage(space: SearchSpace, stage: str, prev_widths: list[int]) -> list[dict[str, Any]]:
    """Distinct (input width, block, effective options) of one stage, each as a partial point + ``c_in``."""
    ch = space.choices
    tasks = []
    for block in ch[f"{stage}.block"]:
        family = get_family(block)
        depths = ch[f"{stage}.depth"] if family.depth_in_block else [max(ch[f"{stage}.depth"])]
        dims = [ch[f"{stage}.{o}"] if o in family.knobs else ch[f"{stage}.{o}"][:1] for o in KNOBS]
        for c_in, depth, width, *opts in itertools.product(prev_widths, depths, ch[f"{stage}.width"], *dims):
            part = {f"{stage}.block": block, f"{stage}.depth": depth, f"{stage}.width": width}
            part.update({f"{stage}.{o}": v for o, v in zip(KNOBS, opts, strict=True)})
            tasks.append({"c_in": c_in, "width": width, "part": part})
    return tasks


def _is_stage_space(space: SearchSpace) -> bool:
    need = {"stem.type", "stem.width", "sppf", "neck.width", "neck.depth"}
    need |= {f"{s}.{o}" for s in STAGE_NAMES for o in STAGE_KEYS}
    return set(space.choices) == need


def covering_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Points of a stem/P3/P4/P5/neck space that together produce every distinct unit of the space."""
    ch = space.choices
    stages = STAGE_NAMES
    tasks: dict[str, list[dict[str, Any]]] = {
        "stem": [{"width": w, "part": {"stem.type": t, "stem.width": w}}
                 for t, w in itertools.product(ch["stem.type"], ch["stem.width"])],
    }
    prev = ch["stem.width"]
    for s in stages:
        tasks[s] = _tasks_for_stage(space, s, prev)
        prev = ch[f"{s}.width"]
    tasks["neck"] = [{"widths": (a, b, c), "part": {"neck.width": nw, "neck.depth": nd, "sppf": sp}}
                     for a, b, c, nw, nd, sp in itertools.product(ch["P3.width"], ch["P4.width"], ch["P5.width"],
                                                                  ch["neck.width"], ch["neck.depth"], ch["sppf"])]
    pending = {k: list(range(len(v))) for k, v in tasks.items()}

    def pick(name: str, ok: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        for j, i in enumerate(pending[name]):
            if ok(tasks[name][i]):
                return tasks[name][pending[name].pop(j)]
        for t in tasks[name]:
            if ok(t):
                return t
        raise SearchError(f"{space.source}: cannot chain a {name} choice with the other stages' widths")

    points = []
    while any(pending.values()):
        seed = max(pending, key=lambda k: len(pending[k]))
        first = tasks[seed][pending[seed].pop(0)]
        got: dict[str, dict[str, Any]] = {seed: first}
        if seed == "neck":
            w3, w4, w5 = first["widths"]
            got["P5"] = pick("P5", lambda t, a=w4, b=w5: t["width"] == b and t["c_in"] == a)
            got["P4"] = pick("P4", lambda t, a=w3, b=w4: t["width"] == b and t["c_in"] == a)
            got["P3"] = pick("P3", lambda t, b=w3: t["width"] == b)
        elif seed in stages:
            k = stages.index(seed)
            for s in stages[k + 1:]:
                prev_w = got[stages[stages.index(s) - 1]]["width"]
                got[s] = pick(s, lambda t, w=prev_w: t["c_in"] == w)
            for s in reversed(stages[:k]):
                need = got[stages[stages.index(s) + 1]]["c_in"]
                got[s] = pick(s, lambda t, w=need: t["width"] == w)
        else:
            got["P3"] = pick("P3", lambda t, w=first["width"]: t["c_in"] == w)
            got["P4"] = pick("P4", lambda t, w=got["P3"]["width"]: t["c_in"] == w)
            got["P5"] = pick("P5", lambda t, w=got["P4"]["width"]: t["c_in"] == w)
        if "stem" not in got:
            got["stem"] = pick("stem", lambda t, w=got["P3"]["c_in"]: t["width"] == w)
        if "neck" not in got:
            widths = (got["P3"]["width"], got["P4"]["width"], got["P5"]["width"])
            got["neck"] = pick("neck", lambda t, w=widths: t["widths"] == w)
        point: dict[str, Any] = {}
        for t in got.values():
            point.update(t["part"])
        points.append(point)
    return points


def covering_archs(space: SpaceLike = None) -> list[Arch]:
    """Distinct architectures (by hash) of :func:`covering_points`."""
    sp = _space(space)
    if not _is_stage_space(sp):
        raise SearchError(f"{sp.source}: parameters do not follow the stem/P3/P4/P5/neck layout")
    out: dict[str, Arch] = {}
    for p in covering_points(sp):
        c = sp.decode(p)
        out.setdefault(c.arch_hash, Arch(c.arch, c.cfg, c.arch_hash))
    return list(out.values())


def sample_archs(space: SpaceLike = None, n: int = 10, seed: int = 0, *, exclude: Iterable[str] = (),
                 strict: bool = True) -> list[Arch]:
    """``n`` distinct random architectures of the space (none whose hash is in ``exclude``); fewer when the
    space has fewer and ``strict`` is False."""
    sp = _space(space)
    rng = np.random.default_rng(seed)
    seen = set(exclude)
    out: list[Arch] = []
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * max(n, 1):
            if not strict:
                break
            raise SearchError(f"{sp.source}: could only draw {len(out)} distinct architectures of {n} asked")
        c = sp.decode(sp.random_point(rng))
        if c.arch_hash in seen:
            continue
        seen.add(c.arch_hash)
        out.append(Arch(c.arch, c.cfg, c.arch_hash))
    return out


def enumerate_space(space: SpaceLike, imgsz: int, *, verify: int = 8, seed: int = 0, patience: int = 60,
                    max_samples: int = 3000, progress: bool = True) -> BlockSet:
    """All distinct units the space can produce at ``imgsz`` (see the module docstring)."""
    sp = _space(space)
    if _is_stage_space(sp):
        cover = covering_archs(sp)
        bs = collect_blocks(cover, imgsz, progress=progress)
        if verify:
            checks = sample_archs(sp, min(verify, sp.size), seed=seed + 1000, exclude=[a.arch_hash for a in cover],
                                  strict=False)
            before = len(bs.units)
            collect_blocks(checks, imgsz, progress=False, blocks=bs)
            extra = len(bs.units) - before
            if extra:
                warnings.warn(f"{sp.source}: {extra} unit(s) of random points were not in the covering set "
                              "(added); the enumeration does not match this space's decoding",
                              RuntimeWarning, stacklevel=2)
        return bs
    warnings.warn(f"{sp.source}: parameters do not follow the stem/P3/P4/P5/neck layout; enumerating blocks by "
                  f"random sampling until {patience} samples in a row add nothing (coverage not guaranteed)",
                  RuntimeWarning, stacklevel=2)
    bs = BlockSet(imgsz)
    rng = np.random.default_rng(seed)
    quiet = 0
    for _ in range(max_samples):
        c = sp.decode(sp.random_point(rng))
        before = len(bs.units)
        collect_blocks([Arch(c.arch, c.cfg, c.arch_hash)], imgsz, progress=False, blocks=bs)
        quiet = 0 if len(bs.units) > before else quiet + 1
        if quiet >= patience:
            break
    return bs


def space_source(space: SpaceLike = None) -> ArchSource:
    """The space (a path, dict, loaded space, or ``None`` for the shipped default) as a latency table's
    :class:`~latlab.lut.build.ArchSource`: its identity, random sampling and unit enumeration."""
    sp = _space(space)
    return ArchSource(
        info={"name": sp.name, "hash": sp.space_hash, "source": sp.source},
        sample=lambda n, seed, exclude=(): sample_archs(sp, n, seed, exclude=exclude),
        enumerate=lambda imgsz, verify=8, progress=True: enumerate_space(sp, imgsz, verify=verify, progress=progress),
    )


def table_source(table: LatencyTable, space: SpaceLike = None) -> ArchSource:
    """``space``'s source, or that of the space ``table`` was built from when ``space`` is None (the
    shipped default for a table built from an explicit architecture list): what ``lut check`` samples."""
    if space is None and table.space.get("source") not in (None, "architecture list"):
        space = table.space["source"]
    return space_source(space)
