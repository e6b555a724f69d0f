"""Append-only result files (one CSV line per finished piece of work) that survive a crash mid-write.

A killed run can leave a truncated last line. :func:`repair_tail` cuts it before the next append, so every
earlier line is kept and the next record starts on a line of its own; :func:`append_line` writes a record
with one ``O_APPEND`` write and fsyncs it before returning, so a finished piece of work is never lost.
"""

from __future__ import annotations

import os
from pathlib import Path


def repair_tail(path: Path | str) -> bool:
    """Drop a truncated last line (a run killed mid-write) from ``path``; True when something was cut."""
    p = Path(path)
    if not p.is_file():
        return False
    data = p.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    with open(p, "r+b") as f:
        f.truncate(data.rfind(b"\n") + 1)
        f.flush()
        os.fsync(f.fileno())
    return True


def append_line(path: Path | str, line: str, header: str) -> None:
    """Append ``line`` (``header`` first when the file is new or empty) in one write, then fsync."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        text = (header.rstrip("\n") + "\n" if os.fstat(fd).st_size == 0 else "") + line.rstrip("\n") + "\n"
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
