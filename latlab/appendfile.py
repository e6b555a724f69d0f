"""Append-only result files (one line per finished piece of work) that survive a crash mid-write.

A killed run can leave a truncated last line. :func:`repair_tail` cuts it, so every earlier line is kept and
the next record starts on a line of its own; :func:`append_line` and :func:`append_lines` call it first, then
write their records with one ``O_APPEND`` write and fsync them before returning, so a finished piece of work
is never lost and a torn tail is never glued to the next record. Every resumable file latlab appends to goes
through here (the board kit's stand-alone runner keeps a copy of these few lines: it cannot import latlab).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

_CHUNK = 1 << 16


def repair_tail(path: Path | str) -> bool:
    """Drop a truncated last line (a run killed mid-write) from ``path``; True when something was cut.

    Reads only the file's end (backwards until the last newline), so it is cheap before every append.
    """
    p = Path(path)
    if not p.is_file():
        return False
    with open(p, "r+b") as f:
        end = f.seek(0, os.SEEK_END)
        if end == 0:
            return False
        f.seek(end - 1)
        if f.read(1) == b"\n":
            return False
        pos = end
        cut = 0
        while pos > 0:
            start = max(0, pos - _CHUNK)
            f.seek(start)
            nl = f.read(pos - start).rfind(b"\n")
            if nl >= 0:
                cut = start + nl + 1
                break
            pos = start
        f.truncate(cut)
        f.flush()
        os.fsync(f.fileno())
    return True


def append_lines(path: Path | str, lines: Sequence[str], header: str | None = None) -> None:
    """Repair a torn tail, then append ``lines`` (``header`` first when the file is new or empty) in one
    write and fsync."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    repair_tail(p)
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        head = header.rstrip("\n") + "\n" if header is not None and os.fstat(fd).st_size == 0 else ""
        text = head + "".join(line.rstrip("\n") + "\n" for line in lines)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def append_line(path: Path | str, line: str, header: str | None = None) -> None:
    """Append one ``line`` (see :func:`append_lines`)."""
    append_lines(path, [line], header)
