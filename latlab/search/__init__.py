"""Latency-aware architecture search: ``from latlab.search import SearchSettings, run_search`` works.

The names are resolved on first use (PEP 562) so that importing one submodule, e.g. ``latlab.search.space``
from the latency-table code, does not load Optuna and the run loop with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "SearchSettings": "settings", "parse_latency_budget": "settings", "DEFAULT_BASELINES": "settings",
    "run_search": "run", "SearchResult": "records", "TrialRecord": "records",
    "load_search_study": "storage", "open_storage": "storage", "StorageInfo": "storage",
    "make_sampler": "samplers", "make_pruner": "samplers", "recover_dead_trials": "liveness",
    "Objective": "objective_registry", "register_objective": "objective_registry",
    "get_objective": "objective_registry", "OBJECTIVES": "objective_registry",
    "pareto_mask": "pareto", "pareto_front": "pareto", "hypervolume": "pareto",
    "trials_frame": "export", "export_study": "export",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'latlab.search' has no attribute {name!r}")
    return getattr(importlib.import_module(f"latlab.search.{module}"), name)
