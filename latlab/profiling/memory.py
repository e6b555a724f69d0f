"""Peak memory of one model under a backend: process RSS growth, CUDA max allocated, ONNX Runtime's arena.

Measured in this process, around the run: the model is loaded first (as a PyTorch module or ONNX graph),
then garbage is collected and glibc's free heap returned to the OS (``malloc_trim``), the RSS baseline is
read, and the peak is tracked while the backend prepares the model (its private copy of the weights, an
export, a compiled or quantized graph, a runtime session) and runs ``iters`` inferences. The growth
``peak - baseline`` is what serving this model costs on top of a process that already holds it.

The peak is Linux's ``VmHWM`` after resetting it (``/proc/self/clear_refs``), so no short peak is missed;
where that is not possible (other systems, a locked ``/proc``) RSS is sampled after preparing and after
every call, which can miss a peak inside a call. Which one was used is in the ``method`` column.
Memory freed earlier in this process and kept by the allocator can be reused, so an in-process growth
can read lower than the same model in a fresh process.

On ``cuda`` the table adds ``torch.cuda.max_memory_allocated`` over the run (peak statistics reset
first); elsewhere those columns are NaN. ONNX Runtime's Python API exposes no statistics of its memory
arena, so its arena is inside the RSS growth and is not reported apart (said in ``notes``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import math
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import psutil
import torch

from latlab.ops.sources import resolve_model
from latlab.profiling.backends import get_runner
from latlab.profiling.layerwise import model_input, timing_backend
from latlab.validate import positive_int

MB = 2**20
STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
ORT_ARENA_NOTE = ("ONNX Runtime's Python API exposes no arena statistics: its arena is inside the RSS growth, "
                  "not reported apart")


def _release_free_heap() -> None:
    """Collect garbage and give glibc's free heap back to the OS, so the baseline is what is really held."""
    gc.collect()
    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


def _vm_hwm() -> int | None:
    """Linux's peak resident set size of this process (bytes), or None where it cannot be read."""
    with contextlib.suppress(OSError):
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return None


class PeakRSS:
    """The peak RSS of this process from ``start()`` on: ``VmHWM`` reset through ``clear_refs`` where
    Linux allows it, else the largest RSS seen by ``sample()``."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self.baseline = 0
        self._seen = 0
        self.method = ""

    def rss(self) -> int:
        return int(self._proc.memory_info().rss)

    def start(self) -> int:
        """Release free memory, reset the peak and return the baseline RSS (bytes)."""
        _release_free_heap()
        self.baseline = self._seen = self.rss()
        try:
            CLEAR_REFS.write_text("5")
            ok = _vm_hwm() is not None
        except OSError:
            ok = False
        self.method = ("in-process, VmHWM reset by /proc/self/clear_refs" if ok
                       else "in-process, RSS sampled after prepare and each call")
        return self.baseline

    def sample(self) -> None:
        self._seen = max(self._seen, self.rss())

    @property
    def peak(self) -> int:
        hwm = _vm_hwm() if self.method.startswith("in-process, VmHWM") else None
        return max(self._seen, hwm or 0)


@dataclass
class MemoryReport:
    """One row per model (``table``).

    Columns: ``model``, ``imgsz``, ``batch``, ``backend``, ``device``, ``threads``, ``precision``,
    ``runtime_version``, ``iters`` (inferences run), ``method`` (how the peak was read),
    ``rss_baseline_mb`` (RSS before preparing, model loaded), ``rss_peak_mb``, ``rss_growth_mb``
    (peak - baseline: preparing and running this model), ``rss_retained_mb`` (RSS after the run -
    baseline, with the prepared model still alive), ``cuda_max_allocated_mb`` and
    ``cuda_growth_mb`` (max allocated - allocated before; NaN off CUDA), ``ort_arena_mb`` (NaN: not
    exposed). MB are MiB (2**20 bytes).
    """

    name: str
    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def meta(self) -> dict[str, Any]:
        return {"model": self.name, "method": str(self.table["method"].iloc[0]), "notes": self.notes}


def peak_memory(cfg: Any, *, imgsz: int | None = None, batch: int = 1, backend: str = "torch",
                device: str = "cpu", threads: int = 1, iters: int = 10, channels_last: bool = False
                ) -> MemoryReport:
    """Peak memory of preparing and running ``cfg`` (any form of :mod:`latlab.ops.sources`) under
    ``backend`` on ``device``; see ``latlab profile --memory``."""
    positive_int(iters, "iters")
    resolved = resolve_model(cfg)
    backend, notes = timing_backend(backend, resolved)
    runner = get_runner(backend, device, threads=threads, channels_last=channels_last)
    size, x = model_input(resolved, imgsz, batch)
    cuda = device == "cuda"
    cuda_before = math.nan
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated() / MB
    tracker = PeakRSS()
    baseline = tracker.start()
    fn = runner.prepare(resolved.model, x)
    tracker.sample()
    with runner.session():
        for _ in range(iters):
            fn()
            runner.sync()
            tracker.sample()
    peak = tracker.peak
    retained = tracker.rss()
    cuda_max = torch.cuda.max_memory_allocated() / MB if cuda else math.nan
    if backend.startswith("onnxruntime"):
        notes.append(ORT_ARENA_NOTE)
    row = {"model": resolved.name, "imgsz": size, "batch": batch, "backend": runner.backend,
           "device": runner.device, "threads": threads, "precision": runner.precision,
           "runtime_version": runner.runtime_version(), "iters": iters, "method": tracker.method,
           "rss_baseline_mb": baseline / MB, "rss_peak_mb": peak / MB, "rss_growth_mb": (peak - baseline) / MB,
           "rss_retained_mb": (retained - baseline) / MB, "cuda_max_allocated_mb": cuda_max,
           "cuda_growth_mb": cuda_max - cuda_before, "ort_arena_mb": math.nan}
    del fn
    return MemoryReport(resolved.name, pd.DataFrame([row]), notes)
