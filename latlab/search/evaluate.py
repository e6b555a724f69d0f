"""Evaluate one trial: sample a point → model YAML → reuse a duplicate's results, or build, count, time and
(when within the latency budget) score it with the accuracy estimator (``--accuracy``: the short training by
default, a zero-cost proxy, a two-stage screen + training ...); the trial's values are the study's named
objectives. Per trial it records ``accuracy_estimator``, ``accuracy_score``, ``accuracy_cost_s`` (CPU
seconds), for a two-stage estimator ``screen_score`` and, with ``--accuracy-backend``, ``map_fp32``,
``map50_fp32``, ``accuracy_backend``, ``accuracy_precision`` and ``accuracy_runtime`` (``map`` is then the
converted model's); estimators that train (kind ``training`` or
``composite``) get the epoch hook through which the study prunes."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from latlab.ops.builder import build_model, load_config
from latlab.search.estimators import AccuracyEstimator
from latlab.search.liveness import owner
from latlab.search.objective_registry import Objective
from latlab.search.objectives import LatencyEstimate, TimingLock, count_candidate, remove_dir
from latlab.search.records import is_baseline
from latlab.search.settings import SearchSettings
from latlab.search.space import ORDINAL, SearchSpace, arch_hash

TrialValue = float | tuple[float, ...]
TRIALS_DIR = "trials"  # <study dir>/trials/<number:05d>/: one trial's training run (the report skips these)
CONVERTED_ATTRS = ("map_fp32", "map50_fp32", "accuracy_backend", "accuracy_precision", "accuracy_runtime")


def baseline_cfg(name: str, nc: int) -> dict[str, Any]:
    """The zoo detector ``name`` as a model config with ``nc`` classes."""
    cfg, _ = load_config(name)
    cfg["nc"] = nc
    return cfg


class TrialEvaluator:
    """The Optuna objective function of a search: evaluates one trial (see the module docstring).

    ``objectives`` are the values a trial returns, in order; a single objective gives a float (the
    constrained mode's ``map``)."""

    def __init__(self, settings: SearchSettings, space: SearchSpace, latency: Callable[..., LatencyEstimate],
                 accuracy: AccuracyEstimator, workdir: Path, hw_key: str, encoding: str = ORDINAL,
                 objectives: Sequence[Objective] = (), premeasured: dict[str, dict[str, Any]] | None = None):
        self.s, self.space, self.latency, self.accuracy = settings, space, latency, accuracy
        self.premeasured = dict(premeasured or {})  # baseline name → the latency attrs its budget came from
        self.workdir, self.hw_key, self.encoding = workdir, hw_key, encoding
        self.budget = settings.latency_budget_ms
        self.multi = settings.mode == "pareto"
        self.objectives = list(objectives)
        self.trains = accuracy.spec.kind in ("training", "composite")
        self.train_device = settings.worker_device
        # a GPU that trains is not timed meanwhile: the training holds the GPU's timing lock shared
        self.train_lock = TimingLock(device=self.train_device) if self.train_device != "cpu" else None

    def _values(self, attrs: dict[str, Any]) -> TrialValue:
        values = tuple(o.value(attrs) for o in self.objectives)
        return values if self.multi else values[0]

    def __call__(self, trial: optuna.Trial) -> TrialValue:
        try:
            return self._run(trial)
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            with contextlib.suppress(Exception):
                trial.set_user_attr("note", f"failed: {type(exc).__name__}: {first}"[:500])
            raise

    def _run(self, trial: optuna.Trial) -> TrialValue:
        t0 = time.perf_counter()
        got: dict[str, Any] = {}  # every user attribute this evaluation sets (the objectives read them)

        def put(key: str, value: Any) -> None:
            trial.set_user_attr(key, value)
            got[key] = value

        for k, v in owner().items():
            put(k, v)
        attrs = trial.user_attrs
        baseline = attrs.get("baseline")
        # a retry made by Optuna's RDB heartbeat callback names its origin in a system attribute
        retry_of = attrs.get("retry_of", trial.storage.get_trial_system_attrs(trial._trial_id).get("failed_trial"))
        if retry_of is not None and "retry_of" not in attrs:
            put("retry_of", retry_of)
        if baseline:
            cfg = baseline_cfg(baseline, self.space.nc)
            arch, h = f"baseline:{baseline}", arch_hash(cfg)
        else:
            cand = self.space.suggest(trial, self.encoding)
            cfg, arch, h = cand.cfg, cand.arch, cand.arch_hash
            put("point", cand.point)
        put("arch", arch)
        put("arch_hash", h)
        put("cfg", cfg)
        put("hardware_key", self.hw_key)
        cached = None if baseline else self._cached(trial.study, h, trial.number)
        if cached is not None:
            return self._copy(trial, cached)
        model = build_model(cfg, nc=self.space.nc)
        for k, v in count_candidate(model, self.s.imgsz).items():
            put(k, v)
        lat_attrs = self.premeasured.get(baseline) if baseline else None
        if lat_attrs is None:
            lat_attrs = self.latency(model, cfg).attrs()
        for k, v in lat_attrs.items():
            put(k, v)
        latency_ms = float(lat_attrs["latency_ms"])
        feasible = self.budget is None or latency_ms <= self.budget
        put("feasible", feasible)
        if self.budget is not None:
            trial.set_constraint("latency_ms", latency_ms - self.budget)
        if not feasible and not baseline:
            put("note", f"over the latency budget ({latency_ms:.2f} > {self.budget:g} ms): not trained")
            put("duration_s", time.perf_counter() - t0)
            return self._values(got)  # training objectives take their ``missing`` value
        out_dir = self.workdir / TRIALS_DIR / f"{trial.number:05d}"
        if self.trains:
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

        score = self.accuracy.estimate_baseline if baseline else self.accuracy.estimate
        if self.trains:
            put("train_device", self.train_device)
        busy = self.train_lock.training() if self.trains and self.train_lock else contextlib.nullcontext()
        with busy:
            est = score(cfg, out_dir=out_dir, on_epoch_end=hook if self.trains else None)
        put("accuracy_estimator", self.s.accuracy)
        if math.isfinite(est.score):
            put("accuracy_score", float(est.score))
        put("accuracy_cost_s", float(est.cost_s))
        if "screen_score" in est.details:
            put("screen_score", float(est.details["screen_score"]))
        if est.map is not None:
            put("map50", float(est.map50) if est.map50 is not None else float("nan"))
            put("map", float(est.map))
        for key in CONVERTED_ATTRS:  # --accuracy-backend: how ``map`` was scored, the FP32 mAP beside it
            if key in est.details:
                put(key, est.details[key])
        if "epochs" in est.details:
            put("epochs", int(est.details["epochs"]))
            put("train_s", float(est.details.get("train_s", 0.0)))
            put("trial_dir", str(out_dir))
        put("duration_s", time.perf_counter() - t0)
        if pruned:
            put("note", f"pruned after epoch {pruned[0] + 1} (mAP {est.map:.4f})")
            raise optuna.TrialPruned()
        if est.pruned:
            put("note", f"not trained: screen score {est.details.get('screen_score', float('nan')):.4g} not in "
                        f"the top fraction of the {est.details.get('screened', '?')} screened")
            raise optuna.TrialPruned()
        return self._values(got)

    def _cached(self, study: optuna.Study, h: str, number: int) -> FrozenTrial | None:
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
            if t.number != number and t.user_attrs.get("arch_hash") == h and not is_baseline(t):
                return t
        return None

    def _copy(self, trial: optuna.Trial, src: FrozenTrial) -> TrialValue:
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
        return tuple(src.values) if self.multi else src.values[0]
