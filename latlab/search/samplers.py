"""Optuna samplers and pruners behind ``--sampler``/``--pruner``, wrapped so they never learn from baselines."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from latlab.errors import SearchError

RUNNABLE_SAMPLERS = ("gp", "tpe", "nsga2", "random")
SAMPLERS = ("auto", *RUNNABLE_SAMPLERS)
# ``--sampler auto``: GP in pareto mode (lowest hypervolume regret on the proxy benchmark), TPE in constrained
# mode (TPE learns from pruned trials; the GP sampler only from completed ones).
AUTO_SAMPLER = {"pareto": "gp", "constrained": "tpe"}
PRUNERS = ("median", "halving", "none")


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
    """The pruner behind ``--pruner`` (none in pareto mode: Optuna cannot prune multi-objective trials)."""
    if mode == "pareto" or name == "none":
        return optuna.pruners.NopPruner()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=4, n_warmup_steps=0)
