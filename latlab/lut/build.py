"""Build a latency table: enumerate the distinct blocks a search space can produce, time them, calibrate.

1. **Enumerate.** :func:`covering_candidates` decodes a set of points of the space chosen so that every
   distinct unit (:mod:`latlab.lut.keys`) any point can produce appears in at least one of them: a unit of a
   stage depends on its own options and on its input width (the previous stage's width), the neck on the
   three stage widths and its own options, so the points chain stage tasks with matching widths instead of
   taking the full product. A few random points are then checked against the set (``verify``); a space
   whose parameters do not follow the ``stem.* / P3.* / neck.*`` layout falls back to random sampling
   until no new unit turns up. ``calib`` random models (``calib_seed``) are added for the calibration.
2. **Time.** Blocks are timed in batches with :func:`latlab.profiling.compare.run_interleaved` (every
   block of a batch once per round, shuffled order, ``rounds`` rounds, the low-percentile estimator), the
   same engine and estimator the rest of latlab uses. Each finished batch is appended to
   ``<out>.partial`` (one JSON line per entry, flushed and fsynced), so a killed build continues where it
   stopped when run again with the same options.
3. **Calibrate.** The calibration models are measured end to end, interleaved, and
   :func:`latlab.lut.calibration.fit_calibration` is stored in the table. The timing and counting helpers
   live in :mod:`latlab.lut.measure`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latlab.errors import SearchError, TableError
from latlab.lut.calibration import fit_calibration
from latlab.lut.keys import Unit, model_units
from latlab.lut.measure import (
    DEFAULT_BATCH,
    DEFAULT_ROUNDS,
    _bar,
    count_units,
    default_protocol,
    measure_models,
    measure_units,
)
from latlab.lut.table import Entry, LatencyTable, package_versions
from latlab.profiling.allocator import steady_cpu_allocator

DEFAULT_IMGSZ = 160
DEFAULT_CALIB = 30
CALIB_SEED = 1
PROTOCOL_KEYS = ("engine", "rounds", "batch", "warmup_rounds", "calls_per_round", "estimator")


# ----------------------------------------------------------------------------------------- enumeration
@dataclass
class Arch:
    """One model to enumerate or measure: a YAML dict with a name (the space's arch string)."""

    name: str
    cfg: dict[str, Any]
    arch_hash: str = ""


def _space(space: Any) -> Any:
    from latlab.search.space import SearchSpace, load_space

    return space if isinstance(space, SearchSpace) else load_space(space)


def _tasks_for_stage(space: Any, stage: str, prev_widths: list[int]) -> list[dict[str, Any]]:
    """Distinct (input width, block, effective options) of one stage, each as a partial point + ``c_in``."""
    from latlab.search.space import BLOCK_OPTIONS

    ch = space.choices
    opt_names = ("kernel", "expansion", "se", "act")
    tasks = []
    for block in ch[f"{stage}.block"]:
        used = BLOCK_OPTIONS.get(block, opt_names)
        depths = ch[f"{stage}.depth"] if block == "c3" else [max(ch[f"{stage}.depth"])]
        dims = [ch[f"{stage}.{o}"] if o in used else ch[f"{stage}.{o}"][:1] for o in opt_names]
        for c_in, depth, width, *opts in itertools.product(prev_widths, depths, ch[f"{stage}.width"], *dims):
            part = {f"{stage}.block": block, f"{stage}.depth": depth, f"{stage}.width": width}
            part.update({f"{stage}.{o}": v for o, v in zip(opt_names, opts, strict=True)})
            tasks.append({"c_in": c_in, "width": width, "part": part})
    return tasks


def _is_stage_space(space: Any) -> bool:
    names = set(space.choices)
    need = {"stem.type", "stem.width", "sppf", "neck.width", "neck.depth"}
    need |= {f"{s}.{o}" for s in ("P3", "P4", "P5")
             for o in ("block", "depth", "width", "kernel", "expansion", "se", "act")}
    return names == need


def covering_points(space: Any) -> list[dict[str, Any]]:
    """Points of a stem/P3/P4/P5/neck space that together produce every distinct unit of the space."""
    ch = space.choices
    stages = ("P3", "P4", "P5")
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


def covering_archs(space: Any = None) -> list[Arch]:
    """Distinct architectures (by hash) of :func:`covering_points`."""
    sp = _space(space)
    if not _is_stage_space(sp):
        raise SearchError(f"{sp.source}: parameters do not follow the stem/P3/P4/P5/neck layout")
    out: dict[str, Arch] = {}
    for p in covering_points(sp):
        c = sp.decode(p)
        out.setdefault(c.arch_hash, Arch(c.arch, c.cfg, c.arch_hash))
    return list(out.values())


def sample_archs(space: Any = None, n: int = 10, seed: int = 0, *, exclude: Iterable[str] = (),
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


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class BlockSet:
    """The distinct units of a set of architectures: ``units`` key → first unit seen, ``counts`` key →
    (params, madds, mac_bytes), ``arch_units`` arch name → its unit keys in order."""

    imgsz: int
    units: dict[str, Unit] = field(default_factory=dict)
    counts: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    arch_units: dict[str, list[str]] = field(default_factory=dict)
    models: dict[str, nn.Module] = field(default_factory=dict)

    def add(self, arch: Arch, keep_model: bool = False) -> int:
        """Build ``arch``, add its units; returns how many were new."""
        from latlab.ops.builder import build_model

        net = build_model(arch.cfg)
        units = model_units(net, self.imgsz)
        new = [u for u in units if u.key not in self.units]
        if new:
            self.counts.update(count_units(net, new, self.imgsz))
            for u in new:
                self.units.setdefault(u.key, u)
        self.arch_units[arch.name] = [u.key for u in units]
        if keep_model:
            self.models[arch.name] = net
        return len({u.key for u in new})


def collect_blocks(archs: Sequence[Arch], imgsz: int, *, keep_models: Iterable[str] = (), progress: bool = True,
                   blocks: BlockSet | None = None) -> BlockSet:
    """Build each architecture once and gather its distinct units (1 torch thread, eval mode)."""
    bs = blocks or BlockSet(imgsz)
    keep = set(keep_models)
    with _torch_threads(1), _bar(progress, "enumerating", len(archs)) as bar:
        for a in archs:
            bs.add(a, keep_model=a.name in keep)
            bar(1)
    return bs


def enumerate_space(space: Any, imgsz: int, *, verify: int = 8, seed: int = 0, patience: int = 60,
                    max_samples: int = 3000, progress: bool = True) -> BlockSet:
    """All distinct units the space can produce at ``imgsz`` (see the module docstring)."""
    sp = _space(space)
    if _is_stage_space(sp):
        cover = covering_archs(sp)
        bs = collect_blocks(cover, imgsz, progress=progress)
        if verify:
            checks = sample_archs(sp, min(verify, sp.size), seed=seed + 1000, exclude=[a.arch_hash for a in cover],
                                  strict=False)
            with _torch_threads(1):
                extra = sum(bs.add(a) for a in checks)
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
    with _torch_threads(1):
        for _ in range(max_samples):
            c = sp.decode(sp.random_point(rng))
            quiet = 0 if bs.add(Arch(c.arch, c.cfg, c.arch_hash)) else quiet + 1
            if quiet >= patience:
                break
    return bs


# --------------------------------------------------------------------------------------------- journal
class Journal:
    """``<out>.partial``: a header line, then one JSON line per finished entry or calibration model."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> tuple[dict[str, Any] | None, dict[str, Entry], list[dict[str, Any]]]:
        if not self.path.exists():
            return None, {}, []
        header, entries, models = None, {}, []
        lines = self.path.read_text(errors="replace").splitlines()
        for i, line in enumerate(lines):
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if i == len(lines) - 1:  # the line being written when the build was killed
                    break
                raise TableError(f"{self.path}: line {i + 1} is corrupt; delete the file to start over") from None
            if rec.get("kind") == "header":
                header = rec["header"]
            elif rec.get("kind") == "entry":
                entries[rec["key"]] = Entry.from_dict(rec["entry"], f"{self.path}: line {i + 1}")
            elif rec.get("kind") == "model":
                models.append(rec["model"])
        return header, entries, models

    def _append(self, recs: list[dict[str, Any]]) -> None:
        with open(self.path, "a") as fh:
            for r in recs:
                fh.write(json.dumps(r, allow_nan=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())

    def start(self, header: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._append([{"kind": "header", "header": header}])

    def add_entries(self, items: list[tuple[str, Entry]]) -> None:
        self._append([{"kind": "entry", "key": k, "entry": e.to_dict()} for k, e in items])

    def add_models(self, models: list[dict[str, Any]]) -> None:
        self._append([{"kind": "model", "model": m} for m in models])


def _header(table: LatencyTable) -> dict[str, Any]:
    return {"backend": table.backend, "threads": table.threads, "imgsz": table.imgsz,
            "estimator": table.estimator, "device": table.device, "device_key": table.device_key,
            "space": table.space.get("hash"), "protocol": {k: table.protocol.get(k) for k in PROTOCOL_KEYS}}


def _check_resume(old: dict[str, Any], new: dict[str, Any], where: Path) -> None:
    diff = [k for k in new if old.get(k) != new[k]]
    if diff:
        what = ", ".join(f"{k}: {old.get(k)!r} there vs {new[k]!r} now" for k in diff)
        raise TableError(f"{where}: a partial build with other settings is there ({what}); run with the same "
                         "options to resume, or delete it (or pass fresh=True / --fresh) to start over")


# ----------------------------------------------------------------------------------------------- build
@dataclass
class BuildResult:
    """The finished table, where it was written, and what this run did."""

    table: LatencyTable
    path: Path
    timed: int
    resumed: int
    complete: bool
    calib_models: int


def build_table(out: str | Path, *, space: Any = None, archs: Sequence[Arch] | None = None,
                imgsz: int = DEFAULT_IMGSZ, backend: str = "torch", threads: int = 1, device: str = "cpu",
                rounds: int = DEFAULT_ROUNDS, batch: int = DEFAULT_BATCH, estimator: str = "p10",
                calib: int = DEFAULT_CALIB, calib_seed: int = CALIB_SEED, calibration: str = "auto",
                limit: int | None = None, verify: int = 8, fresh: bool = False,
                progress: bool = True) -> BuildResult:
    """Enumerate, time and calibrate; write the table to ``out`` (library entry of ``latlab lut build``).

    ``archs`` replaces the space enumeration with an explicit list of models (their units are the
    table). ``limit`` times at most that many blocks in this call and leaves the build resumable
    (``complete`` is False until every block and the calibration are done).
    """
    from latlab.fingerprint import device_fingerprint
    from latlab.profiling.timer import busy_notes, check_estimator

    check_estimator(estimator)
    out = Path(out)
    sp = _space(space) if archs is None else None
    space_info = ({"name": sp.name, "hash": sp.space_hash, "source": sp.source} if sp is not None else
                  {"name": "explicit", "hash": _archs_hash(archs or []), "source": "architecture list"})
    if device == "cpu":
        steady_cpu_allocator()  # before the fingerprint, which records it
    fp = device_fingerprint(threads, device)
    table = LatencyTable(backend=backend, threads=threads, imgsz=imgsz, estimator=estimator, fingerprint=fp,
                         versions=package_versions(), protocol=default_protocol(rounds, batch, estimator),
                         space=space_info, device=device, source="build")
    journal = Journal(out.with_name(out.name + ".partial"))
    header = _header(table)
    old_header, old_entries, old_models = (None, {}, []) if fresh else journal.read()
    if old_header is None and not fresh and out.exists():
        with contextlib.suppress(TableError):
            prev = LatencyTable.load(out)
            old_header, old_entries = _header(prev), dict(prev.entries)
            old_models = prev.calibration.models if prev.calibration else []
    if old_header is not None:
        _check_resume(old_header, header, journal.path if journal.path.exists() else out)
    table.entries.update(old_entries)
    if not journal.path.exists() or fresh or old_header is None:
        journal.start(header)
        journal.add_entries(list(table.entries.items()))
        journal.add_models(old_models)

    if sp is not None:
        calib_archs = sample_archs(sp, calib, seed=calib_seed) if calib else []
        blocks = enumerate_space(sp, imgsz, verify=verify, progress=progress)
    else:
        given = list(archs or [])
        calib_archs = given[:calib] if calib else []
        blocks = BlockSet(imgsz)
    blocks = collect_blocks([*(archs or []), *calib_archs], imgsz, progress=progress, blocks=blocks,
                            keep_models=[a.name for a in calib_archs])

    notes = busy_notes(threads, device)
    if notes:
        table.protocol["busy_warnings"] = notes
    todo = [u for k, u in blocks.units.items() if k not in table.entries]
    if limit is not None:
        todo = todo[:max(0, limit)]
    timed = measure_units(table, todo, blocks.counts, progress=progress, on_batch=journal.add_entries)
    missing = [k for k in blocks.units if k not in table.entries]

    models = list(old_models)
    done_names = {m["arch"] for m in models}
    want = [a for a in calib_archs if a.name not in done_names]
    if not missing and want:
        nets = {a.name: blocks.models[a.name] for a in want}
        meas = measure_models(nets, imgsz, backend=backend, threads=threads, device=device, rounds=rounds,
                              estimator=estimator, progress=progress)
        new_models = []
        for a in want:
            keys = blocks.arch_units[a.name]
            es = [table.entries[k] for k in keys]
            new_models.append({"arch": a.name, "arch_hash": a.arch_hash, "units": len(keys),
                               "sum_ms": float(sum(e.estimate_ms for e in es)),
                               "madds": int(sum(e.madds for e in es)), "mac_bytes": int(sum(e.mac_bytes for e in es)),
                               "measured_ms": float(meas[a.name].estimate_ms),
                               "measured_median_ms": float(meas[a.name].median_ms)})
        journal.add_models(new_models)
        models += new_models
    complete = not missing and len(models) >= len(calib_archs)
    if models and complete:
        table.calibration = fit_calibration(models, calibration)
    table.save(out)
    if complete:
        journal.path.unlink(missing_ok=True)
    return BuildResult(table, out, len(timed), len(old_entries), complete, len(models))


def _archs_hash(archs: Sequence[Arch]) -> str:
    import hashlib

    blob = json.dumps([a.cfg for a in archs], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]
