"""The fidelity benchmark's reference: a fixed set of architectures and their long reference trainings.

*Reference set* (:func:`build_reference_set`): a pool of ``pool_factor × n`` points sampled from the search
space with a fixed seed, each timed once with the interleaved engine (short budget), then ``n`` of them
picked stratified over latency (the pool sorted by latency, cut into ``n`` equal-count bins, one point drawn
per bin) plus the three seed detectors (``latlab.ops.zoo.SEED_DETECTORS``, ``nc`` set to the space's). It is
written once to a versioned YAML file (``latlab/configs/fidelity/reference_v1.yaml``) so every estimator is
judged on the same architectures.

*Reference trainings* (:func:`train_reference`): every architecture trained with the
:class:`ReferenceProtocol` (a budget well above a search trial's) once per training seed. Results go to a
CSV, one row per finished training, flushed and fsynced per row, so a killed run loses at most the training
in progress and a rerun continues where it stopped; the protocol is stored in a JSON sidecar and a results
file made with another protocol is refused. ``shard=(i, k)`` lets k processes split the work (pair index
``% k == i``); they may append to the same file (one ``write`` per row in append mode).

:func:`reference_table` turns the CSV into one row per architecture (``map_seed0``, ``map_seed1``,
``map_mean``); :func:`data_separation` says whether the data separates architectures: the spread of the
reference mAP across architectures against the seed-to-seed standard deviation.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from torch import nn

from latlab.appendfile import append_line, repair_tail
from latlab.detection.synthetic import DEFAULT_PRESET, get_preset
from latlab.detection.train import train
from latlab.errors import ConfigError
from latlab.ops.builder import build_model, load_config
from latlab.ops.zoo import SEED_DETECTORS
from latlab.profiling.compare import measure_many
from latlab.search.estimators.base import cpu_clock
from latlab.search.objectives import search_dataset
from latlab.search.space import SearchSpace, arch_hash, load_space
from latlab.yamlio import read_yaml

FIDELITY_DIR = Path(__file__).resolve().parent.parent / "configs" / "fidelity"
DEFAULT_SET = FIDELITY_DIR / "reference_v1.yaml"
DEFAULT_RESULTS = FIDELITY_DIR / "reference_v2.csv"  # v2: the quick start's data, 16 epochs (v1 beside it)
SET_VERSION = 1
ROLES = ("sampled", "seed")
RESULT_COLUMNS = ("name", "arch_hash", "role", "seed", "map", "map50", "epochs", "train_s", "cpu_s")

Progress = Callable[[str], None]
Measurer = Callable[[Mapping[str, nn.Module], int], Mapping[str, float]]


# ------------------------------------------------------------------------------------------ reference set
@dataclass(frozen=True)
class ReferenceArch:
    """One architecture of the reference set."""

    name: str
    arch_hash: str
    cfg: dict[str, Any]
    latency_ms_at_build: float
    role: str
    arch: str = ""


@dataclass(frozen=True)
class ReferenceSet:
    """A loaded reference set file: its header (version, space, seed, imgsz, ...) and architectures."""

    path: Path | None
    header: dict[str, Any]
    archs: list[ReferenceArch]

    @property
    def nc(self) -> int | None:
        return self.header.get("nc")

    def names(self) -> list[str]:
        return [a.name for a in self.archs]


def measure_latency(models: Mapping[str, nn.Module], imgsz: int, *, rounds: int = 10, budget_s: float = 120.0,
                    threads: int = 1) -> dict[str, float]:
    """Interleaved latency (ms, the engine's default estimator) of every model at batch 1, ``imgsz``²."""
    for m in models.values():
        m.eval()
    df = measure_many(dict(models), torch.zeros(1, 3, imgsz, imgsz), rounds=rounds, budget_s=budget_s,
                      threads=threads, progress=False)
    return {str(r["model"]): float(r["estimate_ms"]) for r in df.to_dict(orient="records")}


def stratified_pick(latency: Sequence[float], n: int, rng: np.random.Generator) -> list[int]:
    """Indices of ``n`` items, one drawn from each of ``n`` equal-count latency bins (sorted by latency)."""
    lat = np.asarray(latency, dtype=float)
    if n > lat.size:
        raise ConfigError(f"cannot pick {n} architectures from a pool of {lat.size}")
    order = np.argsort(lat, kind="stable")
    return [int(b[rng.integers(len(b))]) for b in np.array_split(order, n)]


def _seed_cfg(name: str, nc: int) -> dict[str, Any]:
    cfg, _ = load_config(name)
    cfg["nc"] = nc
    return cfg


def build_reference_set(space: str | Path | Mapping[str, Any] | SearchSpace | None = None, n: int = 16,
                        seed: int = 0, imgsz: int = 160, *, pool_factor: int = 4,
                        seeds: Sequence[str] = SEED_DETECTORS, out: Path | str | None = None,
                        measure: Measurer | None = None, progress: Progress | None = None) -> ReferenceSet:
    """Sample, time and pick the reference set (see the module docstring); write it to ``out`` if given.

    ``measure(models, imgsz) -> {name: ms}`` times the pool (default :func:`measure_latency`: one short
    interleaved run of the whole pool and the seeds together)."""
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    if n < 1 or pool_factor < 1:
        raise ConfigError(f"reference set: n and pool_factor must be >= 1 (got {n}, {pool_factor})")
    rng = np.random.default_rng(seed)
    pool, seen, tries = [], set(), 0
    while len(pool) < pool_factor * n and tries < 50 * pool_factor * n:
        tries += 1
        cand = sp.decode(sp.random_point(rng))
        if cand.arch_hash not in seen:
            seen.add(cand.arch_hash)
            pool.append(cand)
    if len(pool) < n:
        raise ConfigError(f"{sp.source}: only {len(pool)} distinct architectures found; need {n}")
    seed_cfgs = {name: _seed_cfg(name, sp.nc) for name in seeds}
    if progress:
        progress(f"timing a pool of {len(pool)} architectures and {len(seed_cfgs)} seed detectors at {imgsz}²")
    models: dict[str, nn.Module] = {f"pool{i:03d}": build_model(c.cfg, imgsz=imgsz) for i, c in enumerate(pool)}
    models.update({name: build_model(cfg, imgsz=imgsz) for name, cfg in seed_cfgs.items()})
    lat = dict((measure or measure_latency)(models, imgsz))
    picked = sorted(stratified_pick([lat[f"pool{i:03d}"] for i in range(len(pool))], n, rng),
                    key=lambda i: lat[f"pool{i:03d}"])
    archs = [ReferenceArch(f"ref{j:02d}", pool[i].arch_hash, pool[i].cfg, round(lat[f"pool{i:03d}"], 4),
                           "sampled", pool[i].arch) for j, i in enumerate(picked)]
    archs += [ReferenceArch(name, arch_hash(cfg), cfg, round(lat[name], 4), "seed", name)
              for name, cfg in seed_cfgs.items()]
    header = {"version": SET_VERSION, "space": sp.name, "space_hash": sp.space_hash,
              "choices_hash": sp.choices_hash, "nc": sp.nc,
              "imgsz": imgsz, "seed": seed, "n": n, "pool": len(pool),
              "selection": "pool sorted by latency, n equal-count bins, one random point per bin; plus seeds",
              "latency": "interleaved engine, batch 1, one short run (ms; at build time, on the build machine)"}
    ref = ReferenceSet(Path(out) if out else None, header, archs)
    if out is not None:
        write_reference_set(ref, out)
    return ref


def write_reference_set(ref: ReferenceSet, path: Path | str) -> Path:
    """Write ``ref`` as YAML (``yaml.safe_dump``): the header keys, then ``architectures``."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    doc = {**ref.header, "architectures": [
        {"name": a.name, "arch_hash": a.arch_hash, "role": a.role, "latency_ms_at_build": a.latency_ms_at_build,
         "arch": a.arch, "cfg": a.cfg} for a in ref.archs]}
    out.write_text(yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return out


def load_reference_set(path: Path | str = DEFAULT_SET) -> ReferenceSet:
    """Read a reference set file; a wrong version or a malformed entry is a one-line ``ConfigError``."""
    p = Path(path)
    doc = read_yaml(p, what="reference set file")
    if not isinstance(doc, dict) or not isinstance(doc.get("architectures"), list):
        raise ConfigError(f"{p}: a reference set is a mapping with an 'architectures' list")
    if doc.get("version") != SET_VERSION:
        raise ConfigError(f"{p}: reference set version {doc.get('version')!r}; this latlab reads {SET_VERSION}")
    archs = []
    for i, e in enumerate(doc["architectures"]):
        if not isinstance(e, dict) or not {"name", "arch_hash", "cfg", "role"} <= set(e):
            raise ConfigError(f"{p}: architectures[{i}] needs name, arch_hash, cfg and role")
        if e["role"] not in ROLES:
            raise ConfigError(f"{p}: architectures[{i}] role {e['role']!r}; expected one of {ROLES}")
        if arch_hash(e["cfg"]) != e["arch_hash"]:
            raise ConfigError(f"{p}: architectures[{i}] ({e['name']}): cfg does not hash to {e['arch_hash']}")
        archs.append(ReferenceArch(str(e["name"]), str(e["arch_hash"]), e["cfg"],
                                   float(e.get("latency_ms_at_build", float("nan"))), e["role"], str(e.get("arch", ""))))
    names = [a.name for a in archs]
    if len(set(names)) != len(names):
        raise ConfigError(f"{p}: architecture names repeat")
    return ReferenceSet(p, {k: v for k, v in doc.items() if k != "architectures"}, archs)


# ------------------------------------------------------------------------------------ reference trainings
@dataclass(frozen=True)
class ReferenceProtocol:
    """How each reference training runs (stored beside the results; resuming with another one is an error).

    The budget is meant to be well above a search trial's (``latlab search run`` trains 3 epochs by
    default); ``seeds`` are the training seeds, each architecture is trained once per seed."""

    imgsz: int = 160
    n_train: int = 2000
    n_val: int = 400
    epochs: int = 12
    batch: int = 16
    seeds: tuple[int, ...] = (0, 1)
    data: str = "builtin"
    val_max_images: int | None = None
    threads: int = 1
    preset: str | None = None  # built-in data preset (None: the default, shapes10)

    def __post_init__(self) -> None:
        object.__setattr__(self, "seeds", tuple(int(s) for s in self.seeds))
        if self.epochs < 1 or self.n_train < 1 or self.n_val < 1 or self.batch < 1 or not self.seeds:
            raise ConfigError(f"reference protocol: epochs, n_train, n_val, batch must be >= 1 and seeds "
                              f"non-empty ({self})")
        if len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"reference protocol: seeds repeat ({self.seeds})")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ReferenceProtocol:
        known = {f for f in cls.__dataclass_fields__}
        bad = set(d) - known
        if bad:
            raise ConfigError(f"reference protocol: unknown field(s) {sorted(bad)}")
        return cls(**{k: (tuple(v) if k == "seeds" else v) for k, v in d.items()})

    def data_kwargs(self) -> dict[str, Any]:
        """What :func:`~latlab.search.objectives.search_dataset` takes besides the data and image size."""
        kwargs: dict[str, Any] = {"n_train": self.n_train, "n_val": self.n_val}
        if self.preset is not None:
            kwargs["preset"] = self.preset
        return kwargs

    def nc(self, default: int | None) -> int | None:
        """Classes of the preset's data (``default``, the reference set's, when no preset is named)."""
        return len(get_preset(self.preset).names) if self.preset is not None else default


Trainer = Callable[[dict[str, Any], int, ReferenceProtocol], Mapping[str, Any]]


def data_identity(settings: Mapping[str, Any]) -> tuple[str, str, Any]:
    """(data, preset, imgsz) of a reference protocol or of a study's training budget: two of them rank
    architectures on the same data when these agree."""
    preset = settings.get("preset") or (settings.get("data_kwargs") or {}).get("preset") or DEFAULT_PRESET
    return str(settings.get("data", "builtin")), str(preset), settings.get("imgsz")


def versioned_files(folder: Path, stem: str) -> list[Path]:
    """The ``<stem>_v<N>.csv`` files of ``folder``, newest (highest N) first: v10 after v9, not after v1."""
    pattern = re.compile(rf"{re.escape(stem)}_v(\d+)\.csv$")
    found = [(int(m.group(1)), p) for p in folder.glob(f"{stem}_v*.csv") if (m := pattern.search(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def matching_reference(settings: Mapping[str, Any], folder: Path = FIDELITY_DIR) -> Path | None:
    """The newest shipped reference results (``reference_v*.csv``) whose protocol trains on the same data as
    ``settings`` (a study's training budget), or None."""
    want = data_identity(settings)
    for p in versioned_files(folder, "reference"):
        proto = read_protocol(p)
        if proto is not None and data_identity(proto.to_dict()) == want:
            return p
    return None


def train_one(cfg: dict[str, Any], seed: int, protocol: ReferenceProtocol) -> dict[str, Any]:
    """One reference training with ``protocol`` (checkpoints in a temporary folder, deleted afterwards)."""
    ds = search_dataset(protocol.data, protocol.data_kwargs(), protocol.imgsz)
    with tempfile.TemporaryDirectory(prefix="latlab-ref-") as tmp:
        res = train(cfg, data=ds, epochs=protocol.epochs, imgsz=protocol.imgsz, batch=protocol.batch, seed=seed,
                    val_max_images=protocol.val_max_images, threads=protocol.threads, progress=False,
                    val_every=protocol.epochs, out_dir=Path(tmp))  # only the final mAP is kept; same weights
    return {"map": res.map, "map50": res.map50, "epochs": res.epochs, "train_s": res.train_s}


def sidecar_path(out_csv: Path | str) -> Path:
    """The JSON sidecar of a results CSV (``reference_v1.csv`` → ``reference_v1.json``)."""
    return Path(out_csv).with_suffix(".json")


def check_protocol(out_csv: Path | str, protocol: ReferenceProtocol, set_info: Mapping[str, Any]) -> None:
    """Write the sidecar for a new results file, or raise ``ConfigError`` when it records another protocol."""
    side = sidecar_path(out_csv)
    if side.is_file():
        try:
            stored = json.loads(side.read_text())
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{side}: unreadable results sidecar ({exc})") from None
        if stored.get("protocol") != protocol.to_dict():
            raise ConfigError(f"{out_csv}: results were made with protocol {stored.get('protocol')}, not "
                              f"{protocol.to_dict()}; use another output file")
        return
    side.parent.mkdir(parents=True, exist_ok=True)
    tmp = side.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"protocol": protocol.to_dict(), **set_info}, indent=2))
    os.replace(tmp, side)


def read_protocol(out_csv: Path | str) -> ReferenceProtocol | None:
    """The protocol recorded beside ``out_csv``, or None when there is no sidecar."""
    side = sidecar_path(out_csv)
    if not side.is_file():
        return None
    return ReferenceProtocol.from_dict(json.loads(side.read_text())["protocol"])


def finished_pairs(out_csv: Path | str) -> set[tuple[str, int]]:
    """(arch_hash, seed) of every training recorded in ``out_csv``."""
    p = Path(out_csv)
    if not p.is_file() or p.stat().st_size == 0:
        return set()
    with open(p, newline="") as f:
        return {(r["arch_hash"], int(r["seed"])) for r in csv.DictReader(f)
                if r.get("arch_hash") and str(r.get("seed", "")).lstrip("-").isdigit()}


def ensure_header(out_csv: Path | str) -> None:
    """Create ``out_csv`` holding only the header line, atomically (``O_EXCL``), unless it exists with content;
    shards starting together thus write one header between them."""
    p = Path(out_csv)
    p.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        if p.stat().st_size:
            return
        fd = os.open(p, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, (",".join(RESULT_COLUMNS) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _append_row(out_csv: Path, row: Mapping[str, Any]) -> None:
    """Append one result line (header first on an empty file), fsynced."""
    vals = [row[c] for c in RESULT_COLUMNS]
    append_line(out_csv, ",".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in vals),
                ",".join(RESULT_COLUMNS))


@dataclass
class ReferenceRun:
    """What :func:`train_reference` did: pairs done before, trained now, and left (other shards or none)."""

    out_csv: Path
    total: int
    done_before: int
    trained: list[tuple[str, int]] = field(default_factory=list)
    repaired: bool = False

    @property
    def remaining(self) -> int:
        return self.total - self.done_before - len(self.trained)


def parse_shard(text: str) -> tuple[int, int]:
    """``"1/2"`` → (1, 2); anything else (or i ≥ k) is a ``ConfigError``."""
    try:
        i, k = (int(x) for x in str(text).split("/"))
    except ValueError:
        raise ConfigError(f"--shard {text!r}: expected i/k, e.g. 0/2") from None
    if not (k >= 1 and 0 <= i < k):
        raise ConfigError(f"--shard {text!r}: need 0 <= i < k")
    return i, k


def train_reference(set_path: Path | str = DEFAULT_SET, protocol: ReferenceProtocol | None = None,
                    out_csv: Path | str = DEFAULT_RESULTS, *, shard: tuple[int, int] = (0, 1),
                    progress: Progress | None = None, trainer: Trainer | None = None) -> ReferenceRun:
    """Train every (architecture, seed) pair of the set not yet in ``out_csv`` and of this shard.

    Pairs are numbered architecture-major (arch 0 seed 0, arch 0 seed 1, arch 1 seed 0 ...); shard
    ``(i, k)`` takes the pairs whose number ``% k == i``. ``trainer(cfg, seed, protocol) -> {map, map50,
    epochs, train_s}`` defaults to :func:`train_one`; ``cpu_s`` is measured around it."""
    protocol = protocol or ReferenceProtocol()
    i, k = shard
    if not (k >= 1 and 0 <= i < k):
        raise ConfigError(f"shard {shard}: need 0 <= i < k")
    ref = load_reference_set(set_path)
    out = Path(out_csv)
    check_protocol(out, protocol, {"reference_set": Path(set_path).name, "space_hash": ref.header.get("space_hash")})
    repaired = repair_tail(out)
    ensure_header(out)
    done = finished_pairs(out)
    pairs = [(a, s) for a in ref.archs for s in protocol.seeds]
    mine = [(a, s) for j, (a, s) in enumerate(pairs) if j % k == i and (a.arch_hash, s) not in done]
    run = ReferenceRun(out, len(pairs), sum((a.arch_hash, s) in done for a, s in pairs), repaired=repaired)
    fit = trainer or train_one
    for n_done, (a, s) in enumerate(mine, start=1):
        if progress:
            progress(f"[{n_done}/{len(mine)}] training {a.name} ({a.role}) seed {s}")
        with cpu_clock() as cpu:
            res = fit(dict(a.cfg), s, protocol)
            cpu_s = cpu()
        row = {"name": a.name, "arch_hash": a.arch_hash, "role": a.role, "seed": s, "map": float(res["map"]),
               "map50": float(res["map50"]), "epochs": int(res["epochs"]), "train_s": float(res["train_s"]),
               "cpu_s": float(cpu_s)}
        _append_row(out, row)
        run.trained.append((a.name, s))
        if progress:
            progress(f"    {a.name} seed {s}: mAP {row['map']:.4f}, mAP50 {row['map50']:.4f}, "
                     f"{row['train_s']:.0f} s")
    return run


# ----------------------------------------------------------------------------------------- the table
@dataclass(frozen=True)
class DataSeparation:
    """Does the data separate architectures? Spread of the reference mAP across architectures (max − min
    and standard deviation of the per-architecture means) against the pooled seed-to-seed standard
    deviation ``√(mean over architectures of the per-architecture sample variance)`` (with two seeds:
    ``√(mean((s0 − s1)² / 2))``). The issue asks for ``range_ratio`` ≥ 3."""

    n_archs: int
    spread_range: float
    spread_std: float
    seed_sd: float
    range_ratio: float
    std_ratio: float

    def text(self) -> str:
        return (f"spread of reference mAP across {self.n_archs} architectures: {self.spread_range:.4f} "
                f"(max − min), {self.spread_std:.4f} (std); seed-to-seed sd {self.seed_sd:.4f}; "
                f"ratio {self.range_ratio:.1f}× (range) / {self.std_ratio:.1f}× (std)")


def reference_table(out_csv: Path | str = DEFAULT_RESULTS) -> pd.DataFrame:
    """One row per architecture: ``name``, ``arch_hash``, ``role``, ``map_seed<s>`` per seed, ``map_mean``
    (mean of the seeds trained), ``n_seeds``. ``attrs["separation"]`` holds :func:`data_separation`."""
    p = Path(out_csv)
    if not p.is_file():
        raise ConfigError(f"{p}: no reference results (run `latlab fidelity reference` first)")
    repair = p.read_bytes()
    if repair and not repair.endswith(b"\n"):  # read past a truncated last line without touching the file
        repair = repair[: repair.rfind(b"\n") + 1]
    with tempfile.TemporaryFile() as tmp:
        tmp.write(repair)
        tmp.seek(0)
        raw = pd.read_csv(tmp) if repair else pd.DataFrame(columns=list(RESULT_COLUMNS))
    raw = raw[pd.to_numeric(raw["seed"], errors="coerce").notna()]  # a stray second header line
    raw = raw.astype({"seed": int, "map": float}).drop_duplicates(["arch_hash", "seed"], keep="last")
    if raw.empty:
        empty = pd.DataFrame(columns=["name", "arch_hash", "role", "map_mean", "n_seeds"])
        empty.attrs["separation"] = asdict(data_separation(empty))
        return empty
    wide = raw.pivot_table(index=["name", "arch_hash", "role"], columns="seed", values="map", aggfunc="last")
    wide.columns = [f"map_seed{int(s)}" for s in wide.columns]
    wide = wide.reset_index()
    seeds = [c for c in wide.columns if c.startswith("map_seed")]
    wide["map_mean"] = wide[seeds].mean(axis=1)
    wide["n_seeds"] = wide[seeds].notna().sum(axis=1)
    order = {n: i for i, n in enumerate(dict.fromkeys(raw["name"]))}
    wide = wide.sort_values("name", key=lambda s: s.map(order)).reset_index(drop=True)
    wide.attrs["separation"] = asdict(data_separation(wide))
    return wide


def pooled_seed_sd(per_seed: pd.DataFrame) -> float:
    """Seed-to-seed standard deviation pooled over models: ``per_seed`` has one row per model and one column
    per training seed; √(mean over the rows with ≥ 2 values of their sample variance)."""
    vals = per_seed.astype(float)
    full = vals[vals.notna().sum(axis=1) >= 2]
    return float(math.sqrt(full.var(axis=1, ddof=1).mean())) if len(full) else float("nan")


def data_separation(table: pd.DataFrame) -> DataSeparation:
    """:class:`DataSeparation` of a :func:`reference_table`."""
    seeds = [c for c in table.columns if c.startswith("map_seed")]
    means = table["map_mean"].astype(float).dropna()
    spread_range = float(means.max() - means.min()) if len(means) else float("nan")
    spread_std = float(means.std(ddof=1)) if len(means) > 1 else float("nan")
    seed_sd = pooled_seed_sd(table[seeds])

    def ratio(a: float) -> float:
        return a / seed_sd if seed_sd > 0 else float("nan")

    return DataSeparation(len(means), spread_range, spread_std, seed_sd, ratio(spread_range), ratio(spread_std))
