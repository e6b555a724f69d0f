"""pytest-benchmark suite of ShuffleNet V2's guideline experiments (the configurations of ``latlab guidelines``).

    pytest benchmarks/test_guidelines_bench.py --benchmark-only
    LATLAB_BENCH_WIDTHS=1,2,4 LATLAB_BENCH_THREADS=2 pytest benchmarks/ --benchmark-only --benchmark-group-by=group

One benchmark per table row and width (ARM/CPU channel set, 56×56, batch 1, torch CPU, 1 thread by
default), grouped per guideline and width; ``extra_info`` carries madds, mac_bytes, the paper's throughput
and its relative latency to the baseline row, so the saved JSON can be compared with the paper. pytest-benchmark
times each network in its own loop (not interleaved), so on a shared machine prefer ``latlab guidelines``
for verdicts; nothing here asserts a speed.
"""

from __future__ import annotations

import os

import pytest
import torch

from latlab.guidelines.experiments import Config, configurations
from latlab.guidelines.paper import GUIDELINES, TABLES
from latlab.guidelines.run import parse_widths, resolve_threads
from latlab.profiling.counter import count_model

IMGSZ = int(os.environ.get("LATLAB_BENCH_IMGSZ", "56"))
WIDTHS = parse_widths(os.environ.get("LATLAB_BENCH_WIDTHS", "1"))
THREADS = resolve_threads(os.environ.get("LATLAB_BENCH_THREADS", "1"))
PLATFORM = os.environ.get("LATLAB_BENCH_PLATFORM", "arm")

CONFIGS: list[Config] = [c for g in GUIDELINES for w in WIDTHS for c in configurations(g, w, PLATFORM)]


@pytest.fixture(autouse=True)
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    yield
    torch.set_num_threads(previous)


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"{c.guideline}-{c.row}-x{c.width}" for c in CONFIGS])
def test_guideline_config(benchmark, cfg: Config):
    model = cfg.build()
    x = torch.randn(1, cfg.in_channels, IMGSZ, IMGSZ)
    counts = count_model(model, input_shape=tuple(x.shape)).totals
    paper = TABLES[cfg.guideline]
    value = paper.row(cfg.row).value(cfg.platform, cfg.width)
    benchmark.group = f"{cfg.guideline} ×{cfg.width}"
    benchmark.extra_info.update({
        "guideline": cfg.guideline, "row": cfg.row, "width": cfg.width, "built": cfg.describe(),
        "exact": cfg.exact, "note": cfg.note, "madds": counts["madds"], "flops": counts["flops"],
        "mac_bytes": counts["mac_bytes"], "threads": THREADS, "imgsz": IMGSZ,
        "paper_throughput": value, "paper_unit": "images/s" if cfg.platform == "arm" else "batches/s",
        "paper_rel_latency": paper.baseline.value(cfg.platform, cfg.width) / value,
    })

    def infer():
        with torch.inference_mode():
            return model(x)

    out = benchmark(infer)
    assert out.shape[0] == 1
