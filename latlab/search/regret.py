"""Hypervolume regret: how far a sampler's found (latency ↓, accuracy ↑) front is from the true front.

Raw hypervolume ratios hide differences (most of the hypervolume is easy to get), so samplers are compared
by *regret*: ``HV(true front) − HV(found front)``, where the true front is estimated from a dense random
sample of the space joined with every point any run found. The objective is a cheap, documented proxy so
hundreds of runs fit in minutes:

- **latency proxy** (:meth:`ProxyObjective.costs`): multiply-adds and activation traffic of each block
  from closed-form formulas per block family at its feature-map size (each family's
  :meth:`latlab.ops.family.SearchFamily.cost`; an unknown family is an error), turned into milliseconds with a
  roofline-style sum ``madds / 2 GMAC/s + act_bytes / 4 GB/s + 0.02 ms per layer`` (depthwise and
  element-wise layers are memory-bound on CPUs, so traffic and layer count matter, as the measured
  ShuffleNetV2 guidelines say);
- **accuracy proxy**: a saturating function of log-parameters and depth, with small bonuses for SE,
  hard-swish/SiLU and 5×5 kernels in deep stages, a penalty for a neck narrower than P5/4, and Gaussian
  noise (σ = ``noise``) seeded by the architecture hash, so one architecture always gets one value.

Neither proxy is a measurement; they only give the benchmark a smooth, conflicting pair of objectives on
the real search space (same parameters, same samplers as ``latlab search``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pandas as pd

from latlab.ops.family import CostTally
from latlab.ops.registry import get_family
from latlab.search import pareto
from latlab.search.samplers import make_sampler
from latlab.search.space import STAGE_NAMES, STEM_STRIDE, SearchSpace, arch_hash, stage_of

LATENCY_ACCURACY = ("minimize", "maximize")  # the proxy's two objectives


def pareto_front_2d(points: np.ndarray) -> np.ndarray:
    """Non-dominated rows of ``points`` [n, 2] = (latency ↓, accuracy ↑), sorted by latency."""
    return pareto.pareto_front(points, LATENCY_ACCURACY)


def hypervolume_2d(points: np.ndarray, ref: Sequence[float]) -> float:
    """Area dominated by ``points`` (latency ↓, accuracy ↑) and bounded by ``ref`` = (worst latency,
    worst accuracy). Points not better than ``ref`` in both objectives add nothing."""
    return pareto.hypervolume(points, ref, LATENCY_ACCURACY)


@dataclass
class ProxyObjective:
    """Cheap (latency proxy ms, accuracy proxy) of a point; see the module docstring."""

    space: SearchSpace
    imgsz: int = 160
    noise: float = 0.005
    gmacs: float = 2.0
    gbytes: float = 4.0
    layer_ms: float = 0.02

    def costs(self, point: dict[str, Any]) -> dict[str, float]:
        """``madds``, ``act_bytes``, ``layers``, ``params`` of the backbone + neck, by closed-form formulas."""
        tally = CostTally()
        conv = tally.conv
        s = self.imgsz
        stem, c = point["stem.type"], point["stem.width"]
        hw = (s / 2) ** 2
        conv(3, c, 6 if stem == "Conv" else 3, hw)
        if STEM_STRIDE[stem] == 2:
            hw /= 4
            conv(c, c, 3, hw)
        else:
            hw /= 4
            if stem == "StemBlock":
                conv(c, c / 2, 1, hw * 4)
                conv(c / 2, c, 3, hw)
                conv(2 * c, c, 1, hw)
        for name in STAGE_NAMES:
            get_family(point[f"{name}.block"]).cost(tally, stage_of(point, name, c), hw)
            hw = hw / 4
            c = point[f"{name}.width"]
        if point["sppf"]:
            conv(c, c / 2, 1, hw)
            conv(2 * c, c, 1, hw)
        nw, nd = point["neck.width"], point["neck.depth"]
        p3, p4 = point["P3.width"], point["P4.width"]
        hw5, hw4, hw3 = hw, hw * 4, hw * 16
        for cin, cout, area in ((c, 2 * nw, hw5), (2 * nw + p4, 2 * nw, hw4), (2 * nw, nw, hw4),
                                (nw + p3, nw, hw3), (nw, nw, hw4), (2 * nw, 2 * nw, hw4), (2 * nw, 2 * nw, hw5),
                                (4 * nw, 4 * nw, hw5)):
            conv(cin, cout, 1, area)
            for _ in range(nd):
                conv(cout / 2, cout / 2, 3, area)
        return {"madds": tally.madds, "act_bytes": tally.act_bytes, "layers": float(tally.layers),
                "params": tally.params}

    def latency_ms(self, costs: dict[str, float]) -> float:
        return (costs["madds"] / (self.gmacs * 1e9) + costs["act_bytes"] / (self.gbytes * 1e9)) * 1e3 \
            + self.layer_ms * costs["layers"]

    def accuracy(self, point: dict[str, Any], costs: dict[str, float]) -> float:
        depth = sum(point[f"{n}.depth"] for n in STAGE_NAMES) + 2 * point["neck.depth"]
        cap = 0.06 * math.log(costs["params"] / 1e4) + 0.05 * math.log(depth)
        bonus = 0.0
        for n in STAGE_NAMES:
            family = get_family(point[f"{n}.block"])
            if family.se_bonus and point[f"{n}.se"]:
                bonus += family.se_bonus
            if "act" in family.knobs and point[f"{n}.act"] != "relu":
                bonus += 0.004
            if "kernel" in family.knobs and point[f"{n}.kernel"] >= 5 and n != "P3":
                bonus += 0.004
        if point["sppf"]:
            bonus += 0.006
        if point["neck.width"] < point["P5.width"] / 4:
            bonus -= 0.02
        acc = 0.5 * (1 - math.exp(-max(cap, 0.0))) + bonus
        h = arch_hash({"backbone": sorted(point.items(), key=lambda kv: kv[0])})
        rng = np.random.default_rng(int(h, 16) % (2**32))
        return acc + self.noise * float(rng.standard_normal())

    def __call__(self, point: dict[str, Any]) -> tuple[float, float]:
        costs = self.costs(point)
        return self.latency_ms(costs), self.accuracy(point, costs)


def run_sampler(space: SearchSpace, sampler: str, seed: int, n_trials: int, objective: ProxyObjective, *,
                population_size: int = 10) -> np.ndarray:
    """(latency, accuracy) of ``n_trials`` points chosen by ``sampler`` ("random", "gp", "tpe", "nsga2"),
    configured and fed (ordinal parameter encoding) as ``latlab search`` configures and feeds it."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=list(LATENCY_ACCURACY),
                                sampler=make_sampler(sampler, seed, multi_objective=True,
                                                     population_size=population_size))

    def f(trial: optuna.Trial) -> tuple[float, float]:
        return objective(space.suggest(trial).point)

    study.optimize(f, n_trials=n_trials)
    return np.asarray([t.values for t in study.trials if t.values is not None], dtype=float)


def dense_sample(space: SearchSpace, objective: ProxyObjective, n: int, seed: int = 12345) -> np.ndarray:
    """(latency, accuracy) of ``n`` uniformly random points."""
    rng = np.random.default_rng(seed)
    return np.asarray([objective(space.random_point(rng)) for _ in range(n)], dtype=float)


def regret_table(space: SearchSpace, samplers: Iterable[str] = ("random", "gp", "tpe", "nsga2"),
                 seeds: Iterable[int] = range(5), n_trials: int = 60, n_dense: int = 20000,
                 objective: ProxyObjective | None = None, population_size: int = 10) -> pd.DataFrame:
    """One row per (sampler, seed): ``hv``, ``regret`` = HV(true) − hv, ``n_trials``; the true front is
    the front of a dense random sample joined with every run's points; the reference point is the
    dense sample's (worst latency, worst accuracy)."""
    obj = objective or ProxyObjective(space)
    dense = dense_sample(space, obj, n_dense)
    ref = (float(dense[:, 0].max()), float(dense[:, 1].min()))
    runs = {(s, seed): run_sampler(space, s, seed, n_trials, obj, population_size=population_size)
            for s in samplers for seed in seeds}
    everything = np.vstack([dense, *runs.values()])
    hv_true = hypervolume_2d(everything, ref)
    rows = [{"sampler": s, "seed": seed, "n_trials": n_trials, "hv": hypervolume_2d(pts, ref),
             "hv_true": hv_true, "regret": hv_true - hypervolume_2d(pts, ref)}
            for (s, seed), pts in runs.items()]
    return pd.DataFrame(rows)


def regret_summary(table: pd.DataFrame, baseline: str = "random", n_boot: int = 2000) -> pd.DataFrame:
    """Per sampler: mean and std of regret and hypervolume, both as ratios to ``baseline``'s means, and a
    95 % bootstrap interval of the regret ratio (``ratio_lo``, ``ratio_hi``: seeds resampled jointly)."""
    g = table.groupby("sampler", sort=False).agg(mean_regret=("regret", "mean"), std_regret=("regret", "std"),
                                                  mean_hv=("hv", "mean"), seeds=("seed", "count")).reset_index()
    base = g.set_index("sampler").loc[baseline]
    g["regret_ratio"] = g["mean_regret"] / base["mean_regret"]
    g["hv_ratio"] = g["mean_hv"] / base["mean_hv"]
    wide = table.pivot(index="seed", columns="sampler", values="regret")
    picks = np.random.default_rng(0).integers(0, len(wide), size=(n_boot, len(wide)))
    boot = {s: wide[s].to_numpy()[picks].mean(axis=1) / wide[baseline].to_numpy()[picks].mean(axis=1)
            for s in wide.columns}
    g["ratio_lo"] = [float(np.percentile(boot[s], 2.5)) for s in g["sampler"]]
    g["ratio_hi"] = [float(np.percentile(boot[s], 97.5)) for s in g["sampler"]]
    return g
