"""Run a latency-aware architecture search as an Optuna study: storage, modes, baselines, crash safety.

Modes
    ``constrained``: maximise mAP50-95; the latency budget is an Optuna constraint
    (``trial.set_constraint("latency_ms", latency - budget)``, ≤ 0 feasible) and a pruner (median or
    successive halving) stops weak trainings on the per-epoch mAP. ``pareto``: minimise latency and maximise
    mAP (GP by default, NSGA-II or TPE); a budget, if given, is a constraint too. Pruning does not exist for
    multi-objective studies in Optuna, so ``pareto`` trials always train to their budget.
    ``--sampler random`` is the baseline sampler for both.

Each trial: sample a point → decode to a model YAML → if a finished trial has the same architecture hash,
copy its results (duplicates cost nothing) → build, count, time (under the host-wide timing lock) →
candidates over the budget are recorded as infeasible and not trained → short training → mAP.

Baselines: the seed detectors (``DEFAULT_BASELINES``) are enqueued as trials with a ``baseline`` user
attribute when the study is created, always trained (even over the budget) so reports can show what the
search beat. Samplers never see them (:class:`SearchOnlySampler`): they have no point in the space.

Storage: an Optuna journal file (default ``results/search/<study>/journal.log``) or an RDB URL
(``postgresql://user:pw@host/db``: the multi-worker path; several processes on one or many hosts share a
study). The study records the device fingerprint; joining a study whose latencies were measured on other
hardware is refused unless latency comes from a table.

Crash safety: each trial records its owner (host, pid, process start time). On start and before each trial
a worker fails RUNNING trials whose owner process on this host is gone and enqueues them again
(``retry_of``), so a SIGKILLed run resumes by re-running the command: finished trials are kept, the
interrupted one is marked FAIL and retried once more. On RDB storage Optuna's heartbeat with
``RetryHeartbeatStaleTrialCallback`` does the same across hosts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import optuna
import psutil
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from latlab.errors import LatlabError, SearchError
from latlab.fingerprint import device_fingerprint, hardware_key
from latlab.profiling.allocator import steady_cpu_allocator
from latlab.runs import RESULTS_ROOT
from latlab.search.objectives import (
    LatencyEstimate,
    MeasuredLatency,
    PredictedLatency,
    TrainedAccuracy,
    count_candidate,
    load_lut_predictor,
    parse_latency_source,
    remove_dir,
)
from latlab.search.space import CATEGORICAL, ORDINAL, SearchSpace, arch_hash, load_space

DEFAULT_BASELINES = ("yolov5s-shufflenetv2", "yolov5s-ghost-backbone", "yolov5n")
MODES = ("constrained", "pareto")
RUNNABLE_SAMPLERS = ("gp", "tpe", "nsga2", "random")
SAMPLERS = ("auto", *RUNNABLE_SAMPLERS)
# ``--sampler auto``: GP in pareto mode (lowest hypervolume regret on the proxy benchmark), TPE in constrained
# mode (TPE learns from pruned trials; the GP sampler only from completed ones).
AUTO_SAMPLER = {"pareto": "gp", "constrained": "tpe"}
PRUNERS = ("median", "halving", "none")
ATTR = "latlab."  # prefix of study user attributes
MAX_RETRIES = 3
OWNERLESS_GRACE_S = 120.0
HEARTBEAT_S = 30
_UNITS = {"ms": 1.0, "s": 1000.0, "us": 1e-3, "µs": 1e-3}


# ------------------------------------------------------------------------------------------ settings
def parse_latency_budget(text: str | float | None) -> float | None:
    """``"12ms"``, ``"0.012s"``, ``"800us"`` → milliseconds; a bare number or a non-positive budget is an error."""
    if text is None:
        return None
    s = str(text).strip().lower().replace(" ", "")
    m = re.fullmatch(r"([-+]?\d+(?:\.\d*)?(?:e[-+]?\d+)?)(ms|s|us|µs)?", s)
    if not m:
        raise SearchError(f"latency budget {text!r}: expected a number with a unit, e.g. '12ms', '0.012s'")
    if m.group(2) is None:
        raise SearchError(f"latency budget {text!r} has no unit: write '{m.group(1)}ms' (or s, us)")
    value = float(m.group(1)) * _UNITS[m.group(2)]
    if not value > 0 or not math.isfinite(value):
        raise SearchError(f"latency budget {text!r} must be a positive time")
    return value


@dataclass
class SearchSettings:
    """Everything one ``latlab search run`` needs (the CLI's options, as a library object)."""

    mode: str = "constrained"
    latency_budget_ms: float | None = None
    n_trials: int | None = None
    hours: float | None = None
    space: str | Path | dict | None = None
    storage: str | None = None
    study: str | None = None
    imgsz: int = 160
    epochs: int | None = None
    minutes: float | None = None
    device: str = "cpu"
    latency: str = "measured"
    sampler: str = "auto"
    seed: int = 0
    resume: bool = False
    threads: int = 1
    data: str = "builtin"
    data_kwargs: dict[str, Any] = field(default_factory=dict)
    batch: int = 16
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    pruner: str = "median"
    population_size: int = 10
    results_root: Path | str = RESULTS_ROOT
    keep_weights: bool = False
    latency_max_time_s: float = 5.0
    estimator: str = "p10"
    val_max_images: int | None = None

    def check(self) -> None:
        """Raise ``SearchError`` for inconsistent settings before anything is opened or run."""
        if self.mode not in MODES:
            raise SearchError(f"--mode {self.mode!r}: expected one of {', '.join(MODES)}")
        if self.sampler not in SAMPLERS:
            raise SearchError(f"--sampler {self.sampler!r}: expected one of {', '.join(SAMPLERS)}")
        if self.pruner not in PRUNERS:
            raise SearchError(f"pruner {self.pruner!r}: expected one of {', '.join(PRUNERS)}")
        if self.mode == "constrained" and self.latency_budget_ms is None:
            raise SearchError("--mode constrained needs --latency-budget (e.g. 12ms)")
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise SearchError(f"latency budget must be positive, got {self.latency_budget_ms} ms")
        if self.n_trials is not None and self.n_trials < 1:
            raise SearchError(f"--trials must be >= 1, got {self.n_trials}")
        if self.hours is not None and not self.hours > 0:
            raise SearchError(f"--hours must be > 0, got {self.hours}")
        if self.imgsz < 32 or self.imgsz % 32:
            raise SearchError(f"--imgsz {self.imgsz} must be a positive multiple of 32 (P5 has stride 32)")
        if self.threads < 1:
            raise SearchError(f"threads must be >= 1, got {self.threads}")
        if self.epochs is not None and self.minutes is not None:
            raise SearchError("give --epochs or --minutes (the per-trial training budget), not both")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise SearchError(f"--device {self.device!r}: expected cpu or cuda")
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise SearchError(f"--device {self.device}: no CUDA device is available on this host")
        parse_latency_source(self.latency)

    @property
    def sampler_name(self) -> str:
        """The sampler that runs (``auto`` resolved by mode)."""
        return AUTO_SAMPLER.get(self.mode, "tpe") if self.sampler == "auto" else self.sampler

    @property
    def study_name(self) -> str:
        return self.study or f"{self.mode}-{self.sampler_name}"


# ------------------------------------------------------------------------------------------- storage
@dataclass
class StorageInfo:
    """An opened storage: ``kind`` is "journal" or "rdb"; ``location`` is printable (password hidden)."""

    kind: str
    location: str
    storage: Any


def study_dir(study: str, root: Path | str = RESULTS_ROOT) -> Path:
    return Path(root) / "search" / study


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_storage(spec: str | None, study: str, root: Path | str = RESULTS_ROOT, *, create: bool = True
                 ) -> StorageInfo:
    """Open ``spec``: None → the default journal file, a URL with ``://`` → RDB, else a journal path."""
    if spec and "://" in spec:
        return _open_rdb(spec)
    if spec:
        path = Path(spec)
        if path.is_dir() or spec.endswith(("/", os.sep)):
            path = path / "journal.log"
    else:
        path = study_dir(study, root) / "journal.log"
    if not create and not path.is_file():
        raise SearchError(f"no search journal at {path} (run `latlab search run --study {study}` first, "
                          "or pass --storage)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return StorageInfo("journal", str(path), JournalStorage(JournalFileBackend(str(path))))
    except OSError as exc:
        raise SearchError(f"cannot open journal storage {path}: {exc}") from None


def _open_rdb(url: str) -> StorageInfo:
    shown = mask_url(url)
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from sqlalchemy.exc import IntegrityError, ProgrammingError

    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat arguments are flagged experimental
                storage = RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_S,
                                     grace_period=4 * HEARTBEAT_S,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRIES))
            return StorageInfo("rdb", shown, storage)
        except (IntegrityError, ProgrammingError):
            # two workers creating Optuna's tables in a fresh database at the same moment: one loses the race
            # on PostgreSQL's catalog (duplicate key / already exists); the tables exist a moment later
            time.sleep(0.5 + attempt)
        except ImportError as exc:
            raise SearchError(f"storage {shown}: database driver missing ({exc}); for PostgreSQL install "
                              "'psycopg[binary]' or use postgresql+psycopg2:// with psycopg2-binary") from None
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SearchError(f"cannot reach storage {shown}: {first.replace(url, shown)}") from None
    raise SearchError(f"storage {shown}: could not create or open Optuna's tables (other workers kept "
                      "creating them for 20 s)")


# ------------------------------------------------------------------------------------ sampler wrapper
class _SearchOnlyStudy:
    """A view of a study whose trial lists leave out baseline trials (everything else is delegated)."""

    def __init__(self, study: optuna.Study):
        self._study = study

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(self, deepcopy: bool = True, states: Any = None, use_cache: bool = False) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if "baseline" not in t.user_attrs]

    def get_trials(self, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class SearchOnlySampler(BaseSampler):
    """Wraps a sampler so it learns only from search trials, not from baseline trials (no point in the
    space: NSGA-II would shrink its crossover space to nothing, TPE would see values without parameters)."""

    def __init__(self, inner: BaseSampler):
        self.inner = inner

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(_SearchOnlyStudy(study), trial)  # type: ignore[arg-type]

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
                        ) -> dict[str, Any]:
        return self.inner.sample_relative(_SearchOnlyStudy(study), trial, search_space)  # type: ignore[arg-type]

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self.inner.sample_independent(_SearchOnlyStudy(study), trial, param_name,  # type: ignore[arg-type]
                                             param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(_SearchOnlyStudy(study), trial)  # type: ignore[arg-type]

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(_SearchOnlyStudy(study), trial, state, values)  # type: ignore[arg-type]

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def make_sampler(name: str, seed: int | None, *, multi_objective: bool, population_size: int = 10
                 ) -> BaseSampler:
    """The Optuna sampler behind ``--sampler`` (TPE: multivariate with constant liar for parallel workers;
    GP: Optuna's Gaussian-process sampler, log-EHVI for two objectives, constraints from ``set_constraint``,
    running trials of other workers taken into account)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # multivariate / constant_liar are flagged experimental
        if name == "gp":
            inner: BaseSampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=10)
        elif name == "tpe":
            inner = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True,
                                               n_startup_trials=10)
        elif name == "nsga2":
            inner = optuna.samplers.NSGAIISampler(seed=seed, population_size=population_size)
        elif name == "random":
            inner = optuna.samplers.RandomSampler(seed=seed)
        else:
            raise SearchError(f"--sampler {name!r}: expected one of {', '.join(RUNNABLE_SAMPLERS)}")
    return SearchOnlySampler(inner)


def make_pruner(name: str, mode: str) -> optuna.pruners.BasePruner:
    if mode == "pareto" or name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
    return optuna.pruners.SuccessiveHalvingPruner()


# ---------------------------------------------------------------------------------------- owners
def _owner() -> dict[str, Any]:
    proc = psutil.Process()
    return {"owner_host": socket.gethostname(), "owner_pid": os.getpid(), "owner_start": proc.create_time()}


def _owner_alive(attrs: dict[str, Any]) -> bool:
    pid, start = attrs.get("owner_pid"), attrs.get("owner_start")
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start is None or abs(proc.create_time() - float(start)) < 1.0
    except (psutil.Error, TypeError, ValueError):
        return False


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose owner process on this host is gone and enqueue them again.

    A trial without owner attributes (killed between creation and its first write) is treated the same
    once it is ``OWNERLESS_GRACE_S`` old. Trials owned by other hosts are left to the RDB heartbeat.
    Returns the numbers of the trials failed here.
    """
    host = socket.gethostname()
    failed = []
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if "owner_host" in attrs:
            if attrs["owner_host"] != host or _owner_alive(attrs):
                continue
        elif t.datetime_start is None or (now - t.datetime_start).total_seconds() < OWNERLESS_GRACE_S:
            continue
        storage = study._storage
        try:
            storage.set_trial_user_attr(t._trial_id, "note", "worker process died during the trial")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            continue
        failed.append(t.number)
        _enqueue_retry(study, t)
    return failed


def _enqueue_retry(study: optuna.Study, t: FrozenTrial) -> None:
    history = [*t.user_attrs.get("retry_history", []), t.number]
    if len(history) > MAX_RETRIES:
        return
    keep = {k: v for k, v in t.user_attrs.items() if k == "baseline"}
    study.enqueue_trial(dict(t.params), user_attrs={**keep, "retry_of": history[0], "retry_history": history})


# ------------------------------------------------------------------------------------------ records
@dataclass
class TrialRecord:
    """What one finished trial produced (for progress displays)."""

    number: int
    state: str
    arch: str
    baseline: str
    latency_ms: float
    map: float
    map50: float
    feasible: bool | None
    note: str = ""


@dataclass
class SearchResult:
    """Summary of a ``run_search`` call; ``trials`` is :func:`latlab.search.export.trials_frame`."""

    study: str
    storage: str
    storage_kind: str
    mode: str
    workdir: Path
    n_run_here: int
    trials: Any
    best: dict[str, Any] | None
    wall_s: float


def _baseline_cfg(name: str, nc: int) -> dict[str, Any]:
    from latlab.ops.builder import load_config

    cfg, _ = load_config(name)
    cfg["nc"] = nc
    return cfg


def _is_baseline(t: FrozenTrial) -> bool:
    return "baseline" in t.user_attrs


def _counts(study: optuna.Study) -> dict[str, int]:
    out = {"finished": 0, "running": 0, "waiting": 0, "failed": 0}
    for t in study.get_trials(deepcopy=False):
        if _is_baseline(t):
            continue
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            out["finished"] += 1
        elif t.state == TrialState.RUNNING:
            out["running"] += 1
        elif t.state == TrialState.WAITING:
            out["waiting"] += 1
        elif t.state == TrialState.FAIL:
            out["failed"] += 1
    return out


def _pending_baselines(study: optuna.Study) -> bool:
    return any(_is_baseline(t) and t.state in (TrialState.WAITING,) for t in study.get_trials(deepcopy=False))


# ------------------------------------------------------------------------------------- the objective
class _Objective:
    """Evaluates one trial (see the module docstring for the steps)."""

    def __init__(self, settings: SearchSettings, space: SearchSpace, latency: Callable[..., LatencyEstimate],
                 accuracy: TrainedAccuracy, workdir: Path, hw_key: str, encoding: str = ORDINAL):
        self.s, self.space, self.latency, self.accuracy = settings, space, latency, accuracy
        self.workdir, self.hw_key, self.encoding = workdir, hw_key, encoding
        self.budget = settings.latency_budget_ms
        self.multi = settings.mode == "pareto"

    def _values(self, lat: float, m: float) -> float | tuple[float, float]:
        return (lat, m) if self.multi else m

    def __call__(self, trial: optuna.Trial) -> float | tuple[float, float]:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            with contextlib.suppress(Exception):
                trial.set_user_attr("note", f"failed: {type(exc).__name__}: {first}"[:500])
            raise

    def _run(self, trial: optuna.Trial) -> float | tuple[float, float]:
        t0 = time.perf_counter()
        for k, v in _owner().items():
            trial.set_user_attr(k, v)
        attrs = trial.user_attrs
        baseline = attrs.get("baseline")
        # a retry made by Optuna's RDB heartbeat callback names its origin in a system attribute
        retry_of = attrs.get("retry_of", trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial"))
        if retry_of is not None and "retry_of" not in attrs:
            trial.set_user_attr("retry_of", retry_of)
        if baseline:
            cfg = _baseline_cfg(baseline, self.space.nc)
            arch, h = f"baseline:{baseline}", arch_hash(cfg)
        else:
            cand = self.space.suggest(trial, self.encoding)
            cfg, arch, h = cand.cfg, cand.arch, cand.arch_hash
            trial.set_user_attr("point", cand.point)
        trial.set_user_attr("arch", arch)
        trial.set_user_attr("arch_hash", h)
        trial.set_user_attr("cfg", cfg)
        trial.set_user_attr("hardware_key", self.hw_key)
        cached = None if baseline else self._cached(trial.study, h, trial.number)
        if cached is not None:
            return self._copy(trial, cached)
        from latlab.ops.builder import build_model

        model = build_model(cfg, nc=self.space.nc)
        for k, v in count_candidate(model, self.s.imgsz).items():
            trial.set_user_attr(k, v)
        lat = self.latency(model, cfg)
        for k, v in lat.attrs().items():
            trial.set_user_attr(k, v)
        feasible = self.budget is None or lat.estimate_ms <= self.budget
        trial.set_user_attr("feasible", feasible)
        if self.budget is not None:
            trial.set_constraint("latency_ms", lat.estimate_ms - self.budget)
        if not feasible and not baseline:
            trial.set_user_attr("note", f"over the latency budget ({lat.estimate_ms:.2f} > {self.budget:g} ms): "
                                        "not trained")
            trial.set_user_attr("duration_s", time.perf_counter() - t0)
            return self._values(lat.estimate_ms, 0.0)
        out_dir = self.workdir / "trials" / f"{trial.number:05d}"
        remove_dir(out_dir)
        pruned = []

        def hook(epoch: int, metrics: dict[str, Any]) -> bool:
            value = metrics.get("map")
            if self.multi or value is None or math.isnan(value):
                return False
            trial.report(float(value), epoch)
            if not baseline and trial.should_prune():
                pruned.append(epoch)
                return True
            return False

        acc = self.accuracy(cfg, out_dir, hook)
        trial.set_user_attr("map50", acc.map50)
        trial.set_user_attr("map", acc.map)
        trial.set_user_attr("epochs", acc.epochs)
        trial.set_user_attr("train_s", acc.train_s)
        trial.set_user_attr("trial_dir", str(out_dir))
        trial.set_user_attr("duration_s", time.perf_counter() - t0)
        if pruned:
            trial.set_user_attr("note", f"pruned after epoch {pruned[0] + 1} (mAP {acc.map:.4f})")
            raise optuna.TrialPruned()
        return self._values(lat.estimate_ms, acc.map)

    def _cached(self, study: optuna.Study, h: str, number: int) -> FrozenTrial | None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if t.number != number and t.user_attrs.get("arch_hash") == h and not _is_baseline(t):
                return t
        return None

    def _copy(self, trial: optuna.Trial, src: FrozenTrial) -> float | tuple[float, float]:
        skip = {"owner_host", "owner_pid", "owner_start", "arch", "arch_hash", "cfg", "retry_of", "retry_history",
                "cached_from", "hardware_key"}
        for k, v in src.user_attrs.items():
            if k not in skip:
                trial.set_user_attr(k, v)
        origin = src.user_attrs.get("cached_from", src.number)
        trial.set_user_attr("cached_from", origin)
        trial.set_user_attr("duration_s", 0.0)
        for k, v in src.constraints.items():
            trial.set_constraint(k, v)
        if src.state == TrialState.PRUNED:
            raise optuna.TrialPruned()
        return tuple(src.values) if self.multi else src.values[0]  # type: ignore[return-value]


# --------------------------------------------------------------------------------------- study setup
def _study_attrs(s: SearchSettings, space: SearchSpace, latency_source: str, fp: dict[str, Any], hw: str,
                 accuracy: TrainedAccuracy) -> dict[str, Any]:
    return {
        "mode": s.mode, "imgsz": s.imgsz, "latency_source": latency_source,
        "latency_kind": "lut" if latency_source.startswith("lut:") else "measured",
        "hardware_key": hw, "fingerprint": fp, "space_hash": space.space_hash, "space": space.raw,
        "space_name": space.name, "latency_budget_ms": s.latency_budget_ms, "nc": space.nc,
        "train_budget": accuracy.budget(), "baselines": list(s.baselines), "estimator": s.estimator,
        "threads": s.threads, "device": s.device, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "param_encoding": ORDINAL,
    }


# Study attributes a joining worker must agree on (latency and mAP would not be comparable otherwise).
_MUST_MATCH = ("mode", "imgsz", "latency_kind", "latency_source", "space_hash", "latency_budget_ms", "nc", "train_budget",
               "estimator")


def _check_join(name: str, existing: dict[str, Any], mine: dict[str, Any], location: str) -> None:
    if f"{ATTR}mode" not in existing:
        raise SearchError(f"study {name!r} in {location} exists but was not created by latlab search "
                          "(no latlab.* study attributes); use another --study name")
    if mine["latency_kind"] == "measured" and existing.get(ATTR + "hardware_key") != mine["hardware_key"]:
        theirs = existing.get(ATTR + "fingerprint") or {}
        ours = mine["fingerprint"]
        raise SearchError(
            f"study {name!r} in {location} was measured on another device ({theirs.get('cpu_model')}, "
            f"{theirs.get('threads')} thread(s), torch {theirs.get('torch')}, key "
            f"{existing.get(ATTR + 'hardware_key')}); this host is {ours.get('cpu_model')}, {ours.get('threads')} "
            f"thread(s), torch {ours.get('torch')} (key {mine['hardware_key']}). Measured latencies from "
            "different devices must not be mixed: use another --study name, or --latency lut:FILE")
    diffs = [f"{k}: study has {existing.get(ATTR + k)!r}, this run {mine[k]!r}"
             for k in _MUST_MATCH if existing.get(ATTR + k) != json.loads(json.dumps(mine[k]))]
    if diffs:
        raise SearchError(f"study {name!r} in {location} was created with other settings ({'; '.join(diffs)}); "
                          "use a new --study name or the study's settings")


def _open_study(s: SearchSettings, info: StorageInfo, attrs: dict[str, Any]) -> tuple[optuna.Study, bool]:
    """Load or create the study; check a joined study's settings before writing anything."""
    name = s.study_name
    directions = ["minimize", "maximize"] if s.mode == "pareto" else ["maximize"]
    existing = _load_existing(name, info)
    if existing is None and s.resume:
        raise SearchError(f"--resume: no study {name!r} in {info.location}")
    created = False
    if existing is None:
        try:
            study = optuna.create_study(study_name=name, storage=info.storage, directions=directions)
            created = True
            for k, v in attrs.items():
                study.set_user_attr(ATTR + k, v)
        except optuna.exceptions.DuplicatedStudyError:
            existing = _load_existing(name, info)
    if not created:
        assert existing is not None
        _wait_for_attrs(existing)
        _check_join(name, existing.user_attrs, attrs, info.location)
        study = existing
        if [d.name.lower() for d in study.directions] != directions:
            raise SearchError(f"study {name!r} has directions {[d.name for d in study.directions]}, "
                              f"mode {s.mode} needs {directions}")
    return study, created


def _load_existing(name: str, info: StorageInfo) -> optuna.Study | None:
    try:
        return optuna.load_study(study_name=name, storage=info.storage)
    except KeyError:
        return None


def _wait_for_attrs(study: optuna.Study, timeout_s: float = 30.0) -> None:
    """A study created a moment ago by another worker may not have its attributes yet."""
    end = time.monotonic() + timeout_s
    while f"{ATTR}mode" not in study.user_attrs and time.monotonic() < end:
        time.sleep(0.5)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


# ----------------------------------------------------------------------------------------------- run
def run_search(settings: SearchSettings, *, on_trial: Callable[[TrialRecord], None] | None = None,
               on_start: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or resume, or join) a search study until ``n_trials`` search trials are finished (baselines
    not counted) or ``hours`` have passed; default 20 trials. Returns the study's trials table.

    ``on_trial(record)`` is called after each trial this process ran (for progress displays);
    ``on_start(info)`` once the study is open.
    """
    from latlab.search.export import best_trial, trials_frame

    s = settings
    s.check()
    t_start = time.perf_counter()
    space = load_space(s.space)
    kind, lut_path = parse_latency_source(s.latency)
    if s.device == "cpu":
        steady_cpu_allocator()  # before the fingerprint, which records it
    fp = device_fingerprint(s.threads, s.device)
    hw = hardware_key(fp)
    if s.device.startswith("cuda"):
        warnings.warn(f"--device {s.device} applies to latency only: candidates are trained on the CPU "
                      "(the detection harness has no GPU path yet)", RuntimeWarning, stacklevel=2)
    if kind == "lut":
        predictor = load_lut_predictor(lut_path, imgsz=s.imgsz, threads=s.threads)  # type: ignore[arg-type]
        table = predictor.identity()
        source = f"lut:{str(table.get('sha256') or lut_path.name)[:12]}"  # type: ignore[union-attr]
        latency: Callable[..., LatencyEstimate] = PredictedLatency(predictor, source, s.device)
    else:
        source, table = "measured", None
        latency = MeasuredLatency(s.imgsz, device=s.device, threads=s.threads, estimator=s.estimator,
                                  max_time_s=s.latency_max_time_s)
    accuracy = TrainedAccuracy(data=s.data, imgsz=s.imgsz, epochs=s.epochs, minutes=s.minutes, batch=s.batch,
                               seed=s.seed, data_kwargs=s.data_kwargs, keep_weights=s.keep_weights,
                               val_max_images=s.val_max_images)
    if accuracy.nc != space.nc:
        space.nc = accuracy.nc  # the data decides the head's classes
    n_target = s.n_trials if s.n_trials is not None else (None if s.hours else 20)
    info = open_storage(s.storage, s.study_name, s.results_root)
    workdir = study_dir(s.study_name, s.results_root)
    workdir.mkdir(parents=True, exist_ok=True)
    attrs = _study_attrs(s, space, source, fp, hw, accuracy)
    attrs["latency_table"] = table
    with _quiet_optuna():
        study, created = _open_study(s, info, attrs)
        if created:
            for name in s.baselines:
                study.enqueue_trial({}, user_attrs={"baseline": name})
        n_before = len(study.get_trials(deepcopy=False))
        seed = s.seed if created else s.seed + 7919 * n_before + os.getpid()
        study.sampler = make_sampler(s.sampler_name, seed, multi_objective=s.mode == "pareto",
                                     population_size=s.population_size)
        study.pruner = make_pruner(s.pruner, s.mode)
        if on_start is not None:
            on_start({"study": s.study_name, "storage": info.location, "kind": info.kind, "created": created,
                      "trials_before": n_before, "target": n_target, "hardware_key": hw})
        # studies created before the ordinal encoding keep sampling categorically (Optuna refuses to mix
        # two distributions under one parameter name)
        encoding = study.user_attrs.get(ATTR + "param_encoding", CATEGORICAL)
        objective = _Objective(s, space, latency, accuracy, workdir, hw, encoding)
        deadline = time.monotonic() + s.hours * 3600 if s.hours else None
        ran, consecutive_fail, last_error = 0, 0, ""
        reported: set[int] = set()
        while True:
            recover_dead_trials(study)
            c = _counts(study)
            if n_target is not None and c["finished"] >= n_target:
                break
            if deadline is not None and time.monotonic() >= deadline:
                break
            if (n_target is not None and c["finished"] + c["running"] >= n_target and not c["waiting"]
                    and not _pending_baselines(study)):
                if info.kind == "rdb":
                    optuna.storages.fail_stale_trials(study)  # a worker on another host may have died
                time.sleep(1.0)  # other workers are finishing the last trials
                continue
            study.optimize(objective, n_trials=1, catch=(LatlabError, RuntimeError, ValueError),
                           gc_after_trial=False, show_progress_bar=False)
            mine = [t for t in study.get_trials(deepcopy=False) if t.number not in reported
                    and t.state.is_finished() and t.user_attrs.get("owner_pid") == os.getpid()]
            reported.update(t.number for t in mine)
            ran += len(mine)
            for t in mine:
                if t.state == TrialState.FAIL:
                    consecutive_fail += 1
                    last_error = t.user_attrs.get("note", "") or "see the log above"
                else:
                    consecutive_fail = 0
                if on_trial is not None:
                    on_trial(_record(t))
            if consecutive_fail >= 3:
                raise SearchError(f"study {s.study_name!r}: 3 trials in a row failed (last: {last_error})")
        df = trials_frame(study)
    return SearchResult(study=s.study_name, storage=info.location, storage_kind=info.kind, mode=s.mode,
                        workdir=workdir, n_run_here=ran, trials=df, best=best_trial(df, s.mode),
                        wall_s=time.perf_counter() - t_start)


def _record(t: FrozenTrial) -> TrialRecord:
    a = t.user_attrs
    return TrialRecord(number=t.number, state=t.state.name, arch=a.get("arch", ""), baseline=a.get("baseline", ""),
                       latency_ms=float(a.get("latency_ms", float("nan"))), map=float(a.get("map", float("nan"))),
                       map50=float(a.get("map50", float("nan"))), feasible=a.get("feasible"),
                       note=str(a.get("note", "")))


def load_search_study(study: str, storage: str | None = None, root: Path | str = RESULTS_ROOT
                      ) -> tuple[optuna.Study, StorageInfo]:
    """Open an existing study for ``show``/``export`` (clear error when it does not exist)."""
    info = open_storage(storage, study, root, create=False)
    with _quiet_optuna():
        try:
            return optuna.load_study(study_name=study, storage=info.storage), info
        except KeyError:
            names = optuna.get_all_study_names(info.storage)
            raise SearchError(f"no study {study!r} in {info.location}; studies there: "
                              f"{', '.join(names) or 'none'}") from None


def settings_dict(s: SearchSettings) -> dict[str, Any]:
    """JSON-able settings (for meta.json)."""
    d = asdict(s)
    d["results_root"] = str(d["results_root"])
    d["space"] = str(d["space"]) if not isinstance(d["space"], dict) else "<dict>"
    d["storage"] = mask_url(s.storage) if s.storage and "://" in s.storage else s.storage
    return d
