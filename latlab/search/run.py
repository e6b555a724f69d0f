"""Run a latency-aware architecture search as an Optuna study: modes, baselines, the run loop.

Modes
    ``constrained``: maximise mAP50-95; the latency budget is an Optuna constraint
    (``trial.set_constraint("latency_ms", latency - budget)``, ≤ 0 feasible) and a pruner (median or
    successive halving) stops weak trainings on the per-epoch mAP. ``pareto``: minimise latency and maximise
    mAP (GP by default, NSGA-II or TPE); a budget, if given, is a constraint too. Pruning does not exist for
    multi-objective studies in Optuna, so ``pareto`` trials always train to their budget.
    ``--sampler random`` is the baseline sampler for both. The objectives are named
    (:mod:`latlab.search.objective_registry`); ``--objective params`` adds one to a pareto study.

Each trial: sample a point → decode to a model YAML → if a finished trial has the same architecture hash,
copy its results (duplicates cost nothing) → build, count, time (under the host-wide timing lock) →
candidates over the budget are recorded as infeasible and not trained → the accuracy estimator
(``--accuracy``, :mod:`latlab.search.estimators`: the short training → mAP by default, or a zero-cost proxy,
a two-stage screen ...). The study's accuracy objective is the estimator's (``map`` or ``accuracy_score``).

Baselines: the seed detectors (``DEFAULT_BASELINES``) are enqueued as trials with a ``baseline`` user
attribute when the study is created, always trained (even over the budget) so reports can show what the
search beat. Samplers never see them (:class:`SearchOnlySampler`): they have no point in the space.

Storage (journal file or RDB URL): :mod:`latlab.search.storage`; join checks (device, settings,
objectives): :mod:`latlab.search.join`; crash safety (owners, dead-trial retry): :mod:`latlab.search.liveness`;
one trial's evaluation: :mod:`latlab.search.evaluate`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import optuna
from optuna.trial import TrialState

from latlab.errors import LatlabError, SearchError
from latlab.fingerprint import device_fingerprint, hardware_key
from latlab.ops.builder import build_model
from latlab.profiling.allocator import steady_cpu_allocator
from latlab.search.estimators.data import context_nc
from latlab.search.evaluate import TrialEvaluator, baseline_cfg
from latlab.search.export import best_trial, trials_frame
from latlab.search.join import ATTR, _load_existing, _open_study, _study_attrs
from latlab.search.liveness import recover_dead_trials, stop_on_sigint
from latlab.search.objective_registry import resolve
from latlab.search.objectives import (
    LatencyEstimate,
    MeasuredLatency,
    PredictedLatency,
    load_lut_predictor,
    parse_latency_source,
)
from latlab.search.records import SearchResult, TrialRecord, is_baseline, trial_record
from latlab.search.samplers import make_pruner, make_sampler
from latlab.search.settings import SearchSettings
from latlab.search.space import CATEGORICAL, load_space
from latlab.search.storage import StorageInfo, open_storage, quiet_optuna, study_dir


def run_search(settings: SearchSettings, *, on_trial: Callable[[TrialRecord], None] | None = None,
               on_start: Callable[[dict[str, Any]], None] | None = None) -> SearchResult:
    """Run (or resume, or join) a search study until ``n_trials`` search trials are finished (baselines
    not counted) or ``hours`` have passed; default 20 trials. Returns the study's trials table.

    This process is one worker: it trains on ``settings.worker_device``. Several workers (this host's
    :func:`latlab.search.workers.run_workers`, or the same command on other hosts with an RDB ``storage``)
    run the same loop on the same study: Optuna's own distributed model.

    ``on_trial(record)`` is called after each trial this process ran (for progress displays);
    ``on_start(info)`` once the study is open.
    """
    s = settings
    s.check()
    t_start = time.perf_counter()
    space = load_space(s.space)
    kind, lut_path = parse_latency_source(s.latency)
    if s.device == "cpu":
        steady_cpu_allocator()  # before the fingerprint, which records it
    fp = device_fingerprint(s.threads, s.device)
    hw = hardware_key(fp)
    if kind == "lut":
        predictor = load_lut_predictor(lut_path, imgsz=s.imgsz, threads=s.threads)  # type: ignore[arg-type]
        table = predictor.identity()
        source = f"lut:{str(table.get('sha256') or lut_path.name)[:12]}"  # type: ignore[union-attr]
        latency: Callable[..., LatencyEstimate] = PredictedLatency(predictor, source, s.device)
    else:
        source, table = "measured", None
        latency = MeasuredLatency(s.imgsz, device=s.device, threads=s.threads, estimator=s.estimator,
                                  max_time_s=s.latency_max_time_s, backend=s.backend)
    nc = context_nc(s.estimator_context())
    if nc != space.nc:
        space.nc = nc  # the data decides the head's classes
    accuracy = s.make_accuracy(nc)
    n_target = s.n_trials if s.n_trials is not None else (None if s.hours else 20)
    info = open_storage(s.storage, s.study_name, s.results_root)
    workdir = study_dir(s.study_name, s.results_root)
    workdir.mkdir(parents=True, exist_ok=True)
    premeasured: dict[str, dict[str, Any]] = {}
    if s.budget_from is not None:
        s, premeasured = _budget_from_baseline(s, info, latency, space.nc)
    attrs = _study_attrs(s, space, source, fp, hw, accuracy)
    attrs["latency_table"] = table
    attrs["budget_measurement"] = premeasured
    with quiet_optuna(), stop_on_sigint(info.storage, s.study_name):  # Ctrl-C: trial retried, exit 130
        study, created = _open_study(s, info, attrs)
        if s.budget_from is not None and not created:
            s, premeasured = _adopt_budget(s, study.user_attrs)  # another worker created it first
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
                      "trials_before": n_before, "target": n_target, "hardware_key": hw, "worker": s.worker,
                      "train_device": s.worker_device})
        # studies created before the ordinal encoding keep sampling categorically (Optuna refuses to mix
        # two distributions under one parameter name)
        encoding = study.user_attrs.get(ATTR + "param_encoding", CATEGORICAL)
        if hasattr(accuracy, "remember"):  # a two-stage screen ranks against every screen score of the study
            accuracy.remember([t.user_attrs["screen_score"] for t in study.get_trials(deepcopy=False)
                               if "screen_score" in t.user_attrs and not is_baseline(t)])
        objective = TrialEvaluator(s, space, latency, accuracy, workdir, hw, encoding,
                                   objectives=resolve(s.objective_names), premeasured=premeasured)
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
                    on_trial(trial_record(t))
            if consecutive_fail >= 3:
                raise SearchError(f"study {s.study_name!r}: 3 trials in a row failed (last: {last_error})")
        df = trials_frame(study)
    return SearchResult(study=s.study_name, storage=info.location, storage_kind=info.kind, mode=s.mode,
                        workdir=workdir, n_run_here=ran, trials=df, best=best_trial(df, s.mode),
                        wall_s=time.perf_counter() - t_start)



def _budget_from_baseline(s: SearchSettings, info: StorageInfo, latency: Callable[..., LatencyEstimate],
                          nc: int) -> tuple[SearchSettings, dict[str, dict[str, Any]]]:
    """``--budget-from NAME``: the budget is baseline NAME's latency (× ``budget_scale``), measured once here (or read from the
    study this run joins); the returned attrs are reused for that baseline's trial, so the model that defines
    the budget is judged by the very measurement the budget came from."""
    existing = _load_existing(s.study_name, info)
    if existing is not None and existing.user_attrs.get(ATTR + "latency_budget_ms") is not None:
        return _adopt_budget(s, existing.user_attrs)
    name = s.budget_from
    assert name is not None
    cfg = baseline_cfg(name, nc)
    measured = latency(build_model(cfg, nc=nc), cfg).attrs()
    return replace(s, latency_budget_ms=float(measured["latency_ms"]) * s.budget_scale), {name: measured}


def _adopt_budget(s: SearchSettings, stored: dict[str, Any]) -> tuple[SearchSettings, dict[str, dict[str, Any]]]:
    """The budget and the baseline measurement it came from, as the study records them."""
    budget = stored.get(ATTR + "latency_budget_ms")
    if budget is None:
        raise SearchError(f"study {s.study_name!r} has no latency budget to adopt for --budget-from {s.budget_from}")
    return replace(s, latency_budget_ms=float(budget)), dict(stored.get(ATTR + "budget_measurement") or {})


def _counts(study: optuna.Study) -> dict[str, int]:
    """Search trials (baselines excluded) by state: finished (complete or pruned), running, waiting, failed."""
    out = {"finished": 0, "running": 0, "waiting": 0, "failed": 0}
    for t in study.get_trials(deepcopy=False):
        if is_baseline(t):
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
    return any(is_baseline(t) and t.state in (TrialState.WAITING,) for t in study.get_trials(deepcopy=False))
