"""Throughput sweep: latency per batch and per image, and images per second, for several batch sizes.

Every batch size is timed in the same interleaved rounds (``run_interleaved``) through the chosen backend,
so drift of the machine hits all sizes alike. Latencies are wall clock (no speed reference): this is the
throughput a user's stopwatch sees. images/s is ``1000 · batch / latency_ms`` of the estimator; its
interval comes from the latency's confidence interval (a slower bound gives the lower images/s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd
import torch

from latlab.errors import ConfigError
from latlab.ops.sources import OnnxGraph, resolve_model
from latlab.profiling.backends import get_runner
from latlab.profiling.compare import run_interleaved
from latlab.profiling.layerwise import model_input, timing_backend
from latlab.profiling.timer import DEFAULT_ESTIMATOR, check_estimator
from latlab.validate import MAX_MODEL_GB, memory_estimate, positive_int_list

DEFAULT_BATCHES = (1, 2, 4, 8)


def parse_batches(text: str | list[int] | tuple[int, ...], what: str = "--batch") -> tuple[int, ...]:
    """Batch sizes from ``"1,2,4,8"`` (or a list): positive integers, each once, in the order given."""
    return positive_int_list(text, what, item="a batch size", example="1,2,4,8")


def _check_onnx_batch(graph: OnnxGraph, batches: tuple[int, ...]) -> None:
    """A graph exported with a fixed batch runs that batch only: a one-line error for any other."""
    dim = graph.proto.graph.input[0].type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value") and any(b != dim.dim_value for b in batches):
        raise ConfigError(f"'{graph.path}': the graph's batch is fixed at {dim.dim_value}; --batch "
                          f"{','.join(map(str, batches))} needs a graph exported with a dynamic batch axis")


@dataclass
class ThroughputSweep:
    """One row per batch size (``table``).

    Columns: ``model``, ``imgsz``, ``batch``, the shared measurement columns of the batch's latency
    (``estimate_ms`` = ``estimator`` over per-call samples, ``ci_low_ms``/``ci_high_ms``, ``median_ms``,
    ``p90_ms``, ``iqr_ms``, ``cv``, ``n``, ``backend``, ``precision``, ...), ``per_image_ms``
    (estimate / batch), ``images_s`` (1000 · batch / estimate) with ``images_s_low``/``images_s_high``
    (from the latency CI) and ``images_s_median`` (from the median latency).
    """

    name: str
    imgsz: int
    table: pd.DataFrame
    estimator: str
    rounds: int
    warnings: list[str] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        return {"model": self.name, "imgsz": self.imgsz, "batches": [int(b) for b in self.table["batch"]],
                "estimator": self.estimator, "rounds": self.rounds, "speed_reference": False,
                "warnings": self.warnings}


def batch_sweep(cfg: Any, batches: str | tuple[int, ...] | list[int] = DEFAULT_BATCHES, *,
                imgsz: int | None = None, backend: str = "torch", device: str = "cpu", threads: int = 1,
                estimator: str = DEFAULT_ESTIMATOR, budget_s: float = 10.0, channels_last: bool = False,
                progress: bool = True) -> ThroughputSweep:
    """Time ``cfg`` (any form of :mod:`latlab.ops.sources`) at each batch size, interleaved; see
    ``latlab profile --batch``."""
    check_estimator(estimator)
    sizes = parse_batches(batches)
    resolved = resolve_model(cfg)
    backend, notes = timing_backend(backend, resolved)
    if isinstance(resolved.model, OnnxGraph):
        _check_onnx_batch(resolved.model, sizes)
    get_runner(backend, device, threads=threads)  # fail early on a missing GPU or extra
    size, first = model_input(resolved, imgsz, 1)
    memory_estimate(max(sizes) * first.numel() * 4, f"--batch {max(sizes)} input", limit=MAX_MODEL_GB)
    inputs: dict[str, torch.Tensor] = {f"batch {b}": model_input(resolved, size, b)[1] for b in sizes}
    run = run_interleaved(dict.fromkeys(inputs, resolved.model), inputs, budget_s=budget_s, estimator=estimator,
                          backend=backend, device=device, threads=threads, channels_last=channels_last,
                          speed_reference=False, progress=progress)
    rows = []
    for b in sizes:
        m = run.measurements[f"batch {b}"]
        rows.append({"model": resolved.name, "imgsz": size, "batch": b, **m.to_row(),
                     "per_image_ms": m.estimate_ms / b, "images_s": 1e3 * b / m.estimate_ms,
                     "images_s_low": 1e3 * b / m.ci_high_ms, "images_s_high": 1e3 * b / m.ci_low_ms,
                     "images_s_median": 1e3 * b / m.median_ms})
    return ThroughputSweep(resolved.name, size, pd.DataFrame(rows), estimator, run.rounds,
                           list(dict.fromkeys(notes + run.warnings)))
