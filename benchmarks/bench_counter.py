"""How long counting takes: latlab (meta tensors) vs fvcore vs thop vs a plain forward, on yolov5s@640.

Run as a script (``python benchmarks/bench_counter.py [--rounds 9] [--model yolov5s] [--imgsz 640]``): the
candidates run interleaved, one call each per round in a rotating order, in one process, and the script
prints the median and p10 of each with the ratios to latlab's count. The issue's target is latlab ≥ 3×
faster than fvcore (stretch 10×). The first (cold) call of each is reported separately: it includes lazy
imports and jit tracing set-up.

``pytest benchmarks/bench_counter.py`` runs the same candidates through pytest-benchmark instead.
Timings on a machine shared with other processes are noise; check ``load avg`` in the header.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch

from latlab.ops.builder import build_model
from latlab.profiling.counter import count_model
from latlab.profiling.crosscheck import fvcore_count

warnings.filterwarnings("ignore")


def candidates(model: torch.nn.Module, imgsz: int) -> dict[str, Callable[[], object]]:
    """The timed calls, each counting (or running) ``model`` once at ``imgsz``."""
    import thop
    from fvcore.nn import FlopCountAnalysis

    shape = (1, 3, imgsz, imgsz)
    x = torch.randn(shape)
    fv_model = copy.deepcopy(model).eval()
    thop_model = copy.deepcopy(model).eval()

    def fvcore() -> float:
        fa = FlopCountAnalysis(fv_model, x)
        fa.unsupported_ops_warnings(False)
        fa.uncalled_modules_warnings(False)
        fa.tracer_warnings("none")
        return fa.total()

    def thop_profile() -> float:
        return thop.profile(thop_model, inputs=(x,), verbose=False)[0]

    def forward() -> object:
        with torch.inference_mode():
            return fv_model(x)

    return {
        "latlab (meta)": lambda: count_model(model, shape),
        "latlab (real)": lambda: count_model(model, shape, meta=False),
        "fvcore": fvcore,
        "thop": thop_profile,
        "forward": forward,
    }


def run(model_name: str = "yolov5s", imgsz: int = 640, rounds: int = 9, threads: int = 1) -> dict[str, list[float]]:
    """Time every candidate ``rounds`` times, interleaved; print medians, p10 and ratios; return the samples."""
    torch.set_num_threads(threads)
    load = os.getloadavg()[0]
    print(f"{model_name}@{imgsz}, {rounds} interleaved rounds, torch threads {threads}, "
          f"load avg {load:.2f} on {os.cpu_count()} cpus{' (BUSY: timings are noise)' if load > 1 else ''}")
    model = build_model(model_name).eval()
    calls = candidates(model, imgsz)
    names = list(calls)
    cold: dict[str, float] = {}
    for name in names:
        t = time.perf_counter()
        calls[name]()
        cold[name] = time.perf_counter() - t
    samples: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:
            t = time.perf_counter()
            calls[name]()
            samples[name].append(time.perf_counter() - t)
    ref_med = statistics.median(samples["latlab (meta)"])
    ref_p10 = _p10(samples["latlab (meta)"])
    print(f"{'candidate':16s} {'cold ms':>9s} {'median ms':>10s} {'p10 ms':>8s} {'median/latlab':>14s} "
          f"{'p10/latlab':>11s}")
    for name in names:
        med, p10 = statistics.median(samples[name]), _p10(samples[name])
        print(f"{name:16s} {cold[name] * 1e3:9.1f} {med * 1e3:10.1f} {p10 * 1e3:8.1f} {med / ref_med:14.2f} "
              f"{p10 / ref_p10:11.2f}")
    fv = fvcore_count(model, (1, 3, imgsz, imgsz))[0]
    print(f"(sanity: fvcore total {fv:.0f}, latlab madds {count_model(model, imgsz=imgsz).totals['madds']})")
    return samples


def _p10(xs: list[float]) -> float:
    s = sorted(xs)
    return s[max(0, round(0.1 * (len(s) - 1)))]


# ------------------------------------------------------------------------ pytest-benchmark entry points
def _bench(benchmark, name: str) -> None:
    model = build_model("yolov5s").eval()
    call = candidates(model, 640)[name]
    call()
    benchmark.pedantic(call, rounds=5, iterations=1)


def test_bench_latlab_meta(benchmark):
    _bench(benchmark, "latlab (meta)")


def test_bench_fvcore(benchmark):
    _bench(benchmark, "fvcore")


def test_bench_thop(benchmark):
    _bench(benchmark, "thop")


def test_bench_forward(benchmark):
    _bench(benchmark, "forward")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="yolov5s")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    run(args.model, args.imgsz, args.rounds, args.threads)
