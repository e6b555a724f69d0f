"""Stability benchmark of latlab's timing engine (issue 4 acceptance). Run it on an idle machine.

(a) one model timed in N separate processes: spread of the default estimate across processes
    (target ≤ 3 %: (max - min) / median of the per-process estimates);
(b) M different small random conv nets timed twice in one process, each pass interleaved with the engine's
    default stopping (or ``--rounds``), repeated ``--repeats-b`` times: how often each estimator repeats
    within ±5 % / ±10 % (target for the default: ≥ 95 % within ±5 %);
(c) the A/B ratio ShuffleNetV2 ×1.0 / MobileNetV2 1.0 over several repeats (interleaved ``compare``).

    python benchmarks/stability.py            # full run (several minutes)
    python benchmarks/stability.py --quick    # a short sanity run
    python benchmarks/stability.py --parts b --models 10 --imgsz 160

Prints a summary; nothing is asserted. Figures taken while other processes share the cores are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np
import torch
from torch import nn

from latlab.fingerprint import device_fingerprint
from latlab.profiling.allocator import allocator_state
from latlab.profiling.compare import compare, run_interleaved
from latlab.profiling.timer import DEFAULT_ESTIMATOR, ESTIMATORS, estimate


def random_net(seed: int, width: int = 24) -> nn.Module:
    """A small random CNN (stem, then 4-7 blocks of dense / depthwise-separable / grouped convs)."""
    g = np.random.default_rng(seed)
    c = int(g.choice([8, 16, 24])) * max(1, width // 24)
    layers: list[nn.Module] = [nn.Conv2d(3, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU()]
    for _ in range(int(g.integers(4, 8))):
        out = int(g.choice([16, 24, 32, 48, 64, 96]))
        stride = int(g.choice([1, 1, 2]))
        kind = g.choice(["dense", "dwsep", "group"])
        if kind == "dense":
            layers += [nn.Conv2d(c, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out), nn.ReLU()]
        elif kind == "dwsep":
            layers += [nn.Conv2d(c, c, 3, stride, 1, groups=c, bias=False), nn.BatchNorm2d(c),
                       nn.Conv2d(c, out, 1, bias=False), nn.BatchNorm2d(out), nn.Hardswish()]
        else:
            groups = 4 if c % 4 == 0 and out % 4 == 0 else 1
            layers += [nn.Conv2d(c, out, 1, bias=False, groups=groups), nn.BatchNorm2d(out), nn.SiLU(),
                       nn.Conv2d(out, out, 3, stride, 1, groups=out, bias=False), nn.BatchNorm2d(out)]
        c = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 10)]
    return nn.Sequential(*layers).eval()


def zoo_model(name: str) -> nn.Module:
    from latlab.ops.builder import build_model

    return build_model(name).eval()


def repeat_table(first: dict[str, np.ndarray], second: dict[str, np.ndarray]) -> dict[str, tuple]:
    """Per estimator: (fraction within ±5 %, within ±10 %, worst relative difference) between two passes."""
    out = {}
    for est in ESTIMATORS:
        rel = np.array([abs(estimate(first[n], est) / estimate(second[n], est) - 1) for n in first])
        out[est] = (float(np.mean(rel <= 0.05)), float(np.mean(rel <= 0.10)), float(rel.max()))
    return out


def part_b(n_models: int, imgsz: int, rounds: int | None, threads: int, seed: int = 0) -> dict[str, tuple]:
    """Two passes over the same nets; ``rounds=None`` uses the engine's default (adaptive) stopping."""
    models = {f"net{i:02d}": random_net(i) for i in range(n_models)}
    x = torch.randn(1, 3, imgsz, imgsz)
    runs = [run_interleaved(models, x, rounds=rounds, threads=threads, progress=False, seed=2 * seed + p)
            for p in range(2)]
    meds = [runs[0].measurements[n].median_ms for n in models]
    how = f"{rounds} rounds" if rounds else f"default stopping ({runs[0].rounds} / {runs[1].rounds} rounds)"
    print(f"(b) {n_models} random nets @{imgsz}, two interleaved passes, {how}, "
          f"medians {min(meds):.2f}-{max(meds):.2f} ms, {threads} thread(s), allocator {allocator_state()}, "
          f"speed factors {runs[0].speed_factor:.3f} / {runs[1].speed_factor:.3f}")
    res = repeat_table({n: runs[0].samples[n].ravel() for n in models},
                       {n: runs[1].samples[n].ravel() for n in models})
    print(f"    {'estimator':<10}{'within ±5%':>12}{'within ±10%':>13}{'worst':>9}")
    for est, (w5, w10, worst) in res.items():
        mark = "  <- default" if est == DEFAULT_ESTIMATOR else ""
        print(f"    {est:<10}{w5:>12.0%}{w10:>13.0%}{worst:>9.1%}{mark}")
    return res


def worker(model: str, imgsz: int, threads: int, budget: float) -> None:
    net = random_net(0) if model == "random" else zoo_model(model)
    m = run_interleaved({"net": net}, torch.randn(1, 3, imgsz, imgsz), budget_s=budget, target_ci=0.0,
                        threads=threads, progress=False, check_busy=False).measurements["net"]
    print(json.dumps({"estimate_ms": m.estimate_ms, "median_ms": m.median_ms, "n": m.n,
                      "speed_factor": m.speed_factor}))


def part_a(model: str, imgsz: int, procs: int, threads: int, budget: float) -> float:
    ests, meds, factors = [], [], []
    for _ in range(procs):
        cmd = [sys.executable, __file__, "--worker", model, "--imgsz", str(imgsz), "--threads", str(threads),
               "--budget", str(budget)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=os.environ.copy())
        r = json.loads(out.stdout.strip().splitlines()[-1])
        ests.append(r["estimate_ms"])
        meds.append(r["median_ms"])
        factors.append(r["speed_factor"])
    spread = (max(ests) - min(ests)) / float(np.median(ests))
    mspread = (max(meds) - min(meds)) / float(np.median(meds))
    print(f"(a) {model} @{imgsz} in {procs} processes, {budget:g} s each: {DEFAULT_ESTIMATOR} "
          + ", ".join(f"{e:.2f}" for e in ests) + f" ms → spread {spread:.1%} (target ≤ 3 %); median "
          + ", ".join(f"{e:.2f}" for e in meds) + f" ms → spread {mspread:.1%}; machine speed factors "
          + ", ".join(f"{f:.3f}" for f in factors))
    return spread


def part_c(model_a: str, model_b: str, imgsz: int, repeats: int, threads: int, budget: float) -> None:
    a, b = zoo_model(model_a), zoo_model(model_b)
    x = torch.randn(1, 3, imgsz, imgsz)
    ratios = []
    for r in range(repeats):
        c = compare(a, b, x, names=(model_a, model_b), budget_s=budget, threads=threads, progress=False, seed=r)
        ratios.append(c.ratio)
        print(f"    repeat {r + 1}: {c.summary()}")
    spread = (max(ratios) - min(ratios)) / float(np.median(ratios))
    print(f"(c) {model_a}/{model_b} @{imgsz}: ratio {min(ratios):.3f}-{max(ratios):.3f} over {repeats} "
          f"repeats, spread {spread:.1%}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="short sanity run")
    p.add_argument("--parts", default="abc")
    p.add_argument("--model", default="shufflenet_v2_x1_0", help="zoo name for (a), or 'random'")
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--procs", type=int, default=5)
    p.add_argument("--models", type=int, default=20)
    p.add_argument("--rounds", type=int, default=0, help="(b) rounds per pass; 0 = the engine's default stopping")
    p.add_argument("--repeats-b", type=int, default=3, help="how many times (b) is repeated")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--budget", type=float, default=3.0, help="seconds per process (a) / per compare (c)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    warnings.showwarning = lambda message, *a, **k: print(f"    warning: {message}")
    if args.worker:
        worker(args.worker, args.imgsz, args.threads, args.budget)
        return
    if args.quick:
        args.procs, args.models, args.rounds, args.repeats, args.budget, args.repeats_b = 2, 4, 15, 2, 1.0, 1
    fp = device_fingerprint(args.threads)
    print(f"{fp['cpu_model']}, {fp['logical_cores']} cores, torch {fp['torch']}, load {fp['load_avg_1m']}, "
          f"estimator {DEFAULT_ESTIMATOR}")
    t0 = time.perf_counter()
    if "a" in args.parts:
        part_a(args.model, args.imgsz, args.procs, args.threads, args.budget)
    if "b" in args.parts:
        for r in range(args.repeats_b):
            part_b(args.models, args.imgsz, args.rounds or None, args.threads, seed=r)
    if "c" in args.parts:
        part_c("shufflenet_v2_x1_0", "mobilenet_v2", 224, args.repeats, args.threads, args.budget)
    print(f"done in {time.perf_counter() - t0:.0f} s; load now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
