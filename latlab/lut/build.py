"""Build a latency table: enumerate the distinct blocks of a set of architectures, time them, calibrate.

1. **Enumerate.** The architectures are an explicit list (``archs``) or an :class:`ArchSource` (a search
   space: ``latlab.search.coverage.space_source`` enumerates every distinct unit (:mod:`latlab.lut.keys`)
   any point of it can produce, see :mod:`latlab.search.coverage`). ``calib`` random models of the source
   (``calib_seed``), or the first ``calib`` listed ones, are added for the calibration.
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
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from latlab.appendfile import append_lines
from latlab.errors import TableError
from latlab.fingerprint import device_fingerprint
from latlab.lut.calibration import fit_calibration
from latlab.lut.keys import Unit, model_units
from latlab.lut.measure import (
    DEFAULT_BATCH,
    DEFAULT_ROUNDS,
    count_units,
    default_protocol,
    measure_models,
    measure_units,
    progress_task,
)
from latlab.lut.table import Entry, LatencyTable, package_versions
from latlab.ops.builder import build_model
from latlab.profiling.allocator import steady_cpu_allocator
from latlab.profiling.backends import get_backend
from latlab.profiling.timer import busy_notes, check_estimator
from latlab.progress import ProgressReporter
from latlab.threads import torch_threads

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


@dataclass(frozen=True)
class ArchSource:
    """Where a table's architectures come from when no explicit list is given (a search space, wired in by
    ``latlab.search.coverage.space_source``, so this package never imports the search).

    ``info`` is the table's ``space`` record (``name``, ``hash``, ``source``); ``sample(n, seed, exclude)``
    draws ``n`` distinct random architectures whose hashes are not in ``exclude``; ``enumerate(imgsz,
    verify, progress)`` returns every distinct unit the source can produce at ``imgsz``.
    """

    info: dict[str, Any]
    sample: Callable[..., list[Arch]]
    enumerate: Callable[..., BlockSet]


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


def collect_blocks(archs: Sequence[Arch], imgsz: int, *, keep_models: Iterable[str] = (),
                   progress: bool | ProgressReporter = True, blocks: BlockSet | None = None) -> BlockSet:
    """Build each architecture once and gather its distinct units (1 torch thread, eval mode)."""
    bs = blocks or BlockSet(imgsz)
    keep = set(keep_models)
    with torch_threads(1), progress_task(progress, "enumerating", len(archs)) as bar:
        for a in archs:
            bs.add(a, keep_model=a.name in keep)
            bar.advance(1)
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
        append_lines(self.path, [json.dumps(r, allow_nan=False) for r in recs])  # cuts a torn tail first

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


def build_table(out: str | Path, *, source: ArchSource | None = None, archs: Sequence[Arch] | None = None,
                imgsz: int = DEFAULT_IMGSZ, backend: str = "torch", threads: int = 1, device: str = "cpu",
                rounds: int = DEFAULT_ROUNDS, batch: int = DEFAULT_BATCH, estimator: str = "p10",
                calib: int = DEFAULT_CALIB, calib_seed: int = CALIB_SEED, calibration: str = "auto",
                limit: int | None = None, verify: int = 8, fresh: bool = False,
                progress: bool | ProgressReporter = True) -> BuildResult:
    """Enumerate, time and calibrate; write the table to ``out`` (library entry of ``latlab lut build``).

    Give ``source`` (a search space: ``latlab.search.coverage.space_source(space)``) or ``archs``, an
    explicit list of models (their units are the table). ``limit`` times at most that many blocks in this
    call and leaves the build resumable (``complete`` is False until every block and the calibration are done).
    """
    check_estimator(estimator)
    out = Path(out)
    sp = source if archs is None else None
    if archs is None and sp is None:
        raise TableError("build_table needs archs=[...] or source= (a search space: "
                         "latlab.search.coverage.space_source(space))")
    space_info = (dict(sp.info) if sp is not None else
                  {"name": "explicit", "hash": _archs_hash(archs or []), "source": "architecture list"})
    if device == "cpu":
        steady_cpu_allocator()  # before the fingerprint, which records it
    fp = device_fingerprint(threads, device)
    table = LatencyTable(backend=backend, precision=get_backend(backend).precision, threads=threads, imgsz=imgsz,
                         estimator=estimator, fingerprint=fp,
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
        calib_archs = sp.sample(calib, calib_seed) if calib else []
        blocks = sp.enumerate(imgsz, verify, progress)
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
    blob = json.dumps([a.cfg for a in archs], sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]
