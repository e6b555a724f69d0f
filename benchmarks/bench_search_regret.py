"""Hypervolume regret of GP, TPE and NSGA-II vs random sampling at an equal trial budget (cheap proxy objective).

Usage: ``python benchmarks/bench_search_regret.py [--trials 60] [--seeds 5] [--dense 20000] [--space FILE]``

The objective is :class:`latlab.search.regret.ProxyObjective` (closed-form latency proxy + smooth accuracy
proxy with fixed per-architecture noise) on the real search space, with the samplers configured exactly as
``latlab search`` configures them. Prints per-run regrets and, per sampler, mean regret and the ratio to
random's (target: regret ≤ 0.6 × random's). Nothing here is timed, so a shared machine does
not change the numbers; they depend only on the seeds.
"""

from __future__ import annotations

import argparse
import time

from latlab.search.regret import ProxyObjective, regret_summary, regret_table
from latlab.search.space import load_space


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--dense", type=int, default=20000)
    ap.add_argument("--population", type=int, default=10, help="NSGA-II population size")
    ap.add_argument("--space", default=None)
    ap.add_argument("--samplers", default="random,gp,tpe,nsga2")
    args = ap.parse_args()
    space = load_space(args.space)
    t0 = time.perf_counter()
    table = regret_table(space, samplers=args.samplers.split(","), seeds=range(args.seeds), n_trials=args.trials,
                         n_dense=args.dense, objective=ProxyObjective(space), population_size=args.population)
    summary = regret_summary(table)
    print(f"space {space.name} ({len(space.choices)} parameters), {args.trials} trials per run, "
          f"{args.seeds} seeds, dense sample {args.dense}, true HV {table['hv_true'].iloc[0]:.4f}")
    print(table.pivot(index="seed", columns="sampler", values="regret").round(4).to_string())
    print()
    print(summary.round(4).to_string(index=False))
    for _, r in summary.iterrows():
        if r["sampler"] != "random":
            verdict = "meets" if r["regret_ratio"] <= 0.6 else "misses"
            print(f"{r['sampler']}: regret {r['regret_ratio']:.2f}x random's (95 % CI {r['ratio_lo']:.2f}-"
                  f"{r['ratio_hi']:.2f}; {verdict} the <= 0.6x target), "
                  f"hypervolume {r['hv_ratio']:.3f}x")
    print(f"({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
