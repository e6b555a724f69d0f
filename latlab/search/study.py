"""The search study, as one import: re-exports of the modules it was split into (kept for notebooks, the CLI
and older code; new code imports from the module that owns a name).

settings (:mod:`~latlab.search.settings`), storage (:mod:`~latlab.search.storage`), samplers and pruners
(:mod:`~latlab.search.samplers`), owner liveness and retry (:mod:`~latlab.search.liveness`), records
(:mod:`~latlab.search.records`), one trial's evaluation (:mod:`~latlab.search.evaluate`), study creation and
join checks (:mod:`~latlab.search.join`), the run loop (:mod:`~latlab.search.run`).
"""

from __future__ import annotations

from latlab.search.evaluate import TrialEvaluator
from latlab.search.join import _MUST_MATCH, ATTR, _check_join, _open_study, _study_attrs
from latlab.search.liveness import HEARTBEAT_S, MAX_RETRIES, OWNERLESS_GRACE_S, recover_dead_trials
from latlab.search.objective_registry import DEFAULT_OBJECTIVES, Objective
from latlab.search.records import SearchResult, TrialRecord
from latlab.search.run import run_search
from latlab.search.samplers import (
    AUTO_SAMPLER,
    PRUNERS,
    RUNNABLE_SAMPLERS,
    SAMPLERS,
    SearchOnlySampler,
    _SearchOnlyStudy,
    make_pruner,
    make_sampler,
)
from latlab.search.settings import (
    DEFAULT_BASELINES,
    MODES,
    SearchSettings,
    parse_latency_budget,
    settings_dict,
)
from latlab.search.storage import StorageInfo, load_search_study, mask_url, open_storage, study_dir

__all__ = [
    "ATTR", "AUTO_SAMPLER", "DEFAULT_BASELINES", "DEFAULT_OBJECTIVES", "HEARTBEAT_S", "MAX_RETRIES", "MODES",
    "OWNERLESS_GRACE_S", "PRUNERS", "RUNNABLE_SAMPLERS", "SAMPLERS", "_MUST_MATCH", "Objective", "SearchOnlySampler",
    "SearchResult", "SearchSettings", "StorageInfo", "TrialEvaluator", "TrialRecord", "_SearchOnlyStudy",
    "_check_join", "_open_study", "_study_attrs", "load_search_study", "make_pruner",
    "make_sampler", "mask_url", "open_storage", "parse_latency_budget", "recover_dead_trials", "run_search",
    "settings_dict", "study_dir",
]
