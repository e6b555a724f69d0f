"""torch's intra-op thread count, set for a block of code and restored afterwards.

Every job that times or trains sets the count explicitly (latency depends on it); doing it through one
context manager means no job leaves the process with another job's setting, also when it raises.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from latlab.errors import ConfigError


@contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count on exit.

    ``n=None`` leaves the count as it is (the block still gets it back unchanged). Yields the count in force.
    """
    if n is not None and n < 1:
        raise ConfigError(f"thread count must be >= 1 or None, got {n}")
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)
