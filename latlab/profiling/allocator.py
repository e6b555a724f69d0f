"""Re-export of :mod:`latlab.allocator` (moved to the bottom layer so the fingerprint can read its state)."""

from latlab.allocator import (
    M_MMAP_THRESHOLD,
    M_TRIM_THRESHOLD,
    MMAP_THRESHOLD_BYTES,
    TRIM_THRESHOLD_BYTES,
    allocator_state,
    steady_cpu_allocator,
)

__all__ = ["MMAP_THRESHOLD_BYTES", "M_MMAP_THRESHOLD", "M_TRIM_THRESHOLD", "TRIM_THRESHOLD_BYTES", "allocator_state",
           "steady_cpu_allocator"]
