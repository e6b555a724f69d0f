"""Steady-state CPU memory allocator for timing: keep freed activation memory instead of unmapping it.

Why: PyTorch's CPU tensors come from glibc ``malloc``. Blocks above glibc's *mmap threshold* (128 KiB at
start, then raised dynamically when such blocks are freed) are ``mmap``-ed fresh and ``munmap``-ed on free,
and the heap top is trimmed back to the OS above the *trim threshold*. Every inference then pays page faults
to zero its activation buffers, and how many depends on the allocation history of the whole process, which
drifts: interleaved nets' latencies drift within a pass and some run much slower than with fixed thresholds
(measurements: benchmarks/README.md#steady-allocator).

A long-running inference server reaches the fixed-threshold state on its own (its one model keeps raising the
threshold to its activation sizes); interleaving many models in one process keeps disturbing it. So latlab
measures the server's steady state: ``steady_cpu_allocator()`` fixes the mmap threshold at glibc's maximum
(32 MiB) and disables trimming, once per process, before CPU timing. It only changes where freed memory goes
(kept for reuse), never what is computed. Set ``LATLAB_KEEP_MALLOC=1`` to leave glibc's defaults alone.
Other platforms (macOS, Windows, musl) are left unchanged and say so in the fingerprint.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 2**31 - 1

_state: str | None = None


def steady_cpu_allocator() -> str:
    """Fix glibc's mmap and trim thresholds for this process (idempotent); return what was done.

    The return value (also recorded in every fingerprint via ``allocator_state``) is one of
    ``"glibc: mmap_threshold=32MiB, trim off"``, ``"default (LATLAB_KEEP_MALLOC=1)"`` or
    ``"default (not glibc)"``.
    """
    global _state
    if _state is not None:
        return _state
    if os.environ.get("LATLAB_KEEP_MALLOC", "") not in ("", "0"):
        _state = "default (LATLAB_KEEP_MALLOC=1)"
        return _state
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        _state = "default (not glibc)"
        return _state
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    ok = libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    ok = libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1 and ok
    _state = "glibc: mmap_threshold=32MiB, trim off" if ok else "default (mallopt refused)"
    return _state


def allocator_state() -> str:
    """What ``steady_cpu_allocator`` did in this process, or ``"default"`` if it has not run."""
    return _state or "default"
