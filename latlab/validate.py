"""Checks of user-given values before anything is expanded, allocated or timed: one function per kind of value.

Each check returns the value in its canonical type (so ``'1e9'``, which YAML 1.1 reads as a string, is
parsed as the number it spells and then range-checked) or raises a :class:`~latlab.errors.LatlabError`
whose one line names the input, the value, what was expected and, for a limit, the limit and the
environment variable that raises it. Limits guard against inputs that would hang or exhaust memory
(a repeat count of 10⁸, a 10⁶-pixel input); their defaults sit well above anything a real model uses.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latlab.errors import ConfigError, LatlabError


@dataclass(frozen=True)
class Limit:
    """An upper bound on some input, raised by setting ``env`` (a positive number)."""

    what: str
    default: float
    env: str

    @property
    def value(self) -> float:
        raw = os.environ.get(self.env)
        if raw is None:
            return self.default
        try:
            v = float(raw)
        except ValueError:
            v = math.nan
        if not math.isfinite(v) or v <= 0:
            raise ConfigError(f"environment variable {self.env}={raw!r}: expected a positive number")
        return v

    def hint(self) -> str:
        """``the limit is N (set ENV to raise it)`` for an error message."""
        return f"the {self.what} limit is {self.value:g} (set {self.env} to raise it)"


MAX_IMGSZ = Limit("image size", 4096, "LATLAB_MAX_IMGSZ")
MAX_REPEAT = Limit("repeat count", 1000, "LATLAB_MAX_REPEAT")
MAX_CHANNELS = Limit("channel count", 16384, "LATLAB_MAX_CHANNELS")
MAX_MULTIPLE = Limit("width/depth multiple", 64, "LATLAB_MAX_MULTIPLE")
MAX_LIST = Limit("list length", 10000, "LATLAB_MAX_LIST")
MAX_MODEL_GB = Limit("model memory estimate (GB)", 8, "LATLAB_MAX_MODEL_GB")
MAX_DATA_GB = Limit("dataset size estimate (GB)", 16, "LATLAB_MAX_DATA_GB")
MAX_COUNT = Limit("count", 10_000_000, "LATLAB_MAX_COUNT")
MIN_IMGSZ = 32


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    """``value`` as a float if it is a number or a string spelling one (YAML 1.1 reads ``1e9`` as text)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def positive_int(value: Any, what: str, *, low: int = 1, limit: Limit | None = MAX_COUNT,
                 error: type[LatlabError] = ConfigError) -> int:
    """An integer ``>= low`` and at most ``limit``; ``what`` names the input (``"--n-train"``)."""
    if not _is_int(value) or value < low:
        raise error(f"{what} must be an integer >= {low}, got {_short(value)}")
    if limit is not None and value > limit.value:
        raise error(f"{what} = {value} is too large: {limit.hint()}")
    return int(value)


def positive_int_list(text: str | Sequence[Any], what: str, *, item: str = "a value", example: str = "1,2,4",
                      error: type[LatlabError] = ConfigError) -> tuple[int, ...]:
    """Positive integers from ``"1,2,4"`` (or a sequence), each once, in the order given; anything else is a
    one-line error naming the option and the bad ``item`` (``"a batch size"``, ``"an epoch count"``)."""
    items = text.split(",") if isinstance(text, str) else list(text)
    length(items, what, error=error)
    out: list[int] = []
    for entry in items:
        raw = entry.strip() if isinstance(entry, str) else entry
        try:
            value = int(raw) if isinstance(raw, str) else raw
        except ValueError:
            value = raw
        if not _is_int(value) or value < 1:
            raise error(f"{what} {text!r}: {raw!r} is not {item}; expected positive integers separated by "
                        f"commas, e.g. {example}")
        positive_int(value, what, limit=MAX_COUNT, error=error)
        if value not in out:
            out.append(value)
    return tuple(out)


def positive_float(value: Any, what: str, *, allow_zero: bool = False, limit: Limit | None = None,
                   error: type[LatlabError] = ConfigError) -> float:
    """A finite number ``> 0`` (``>= 0`` with ``allow_zero``): a time budget, a latency, a calibration factor."""
    v = _number(value) if not isinstance(value, str) else None
    expected = ">= 0" if allow_zero else "> 0"
    if v is None or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise error(f"{what} must be a finite number {expected}, got {_short(value)}")
    if limit is not None and v > limit.value:
        raise error(f"{what} = {v:g} is too large: {limit.hint()}")
    return v


def multiple(value: Any, what: str, *, error: type[LatlabError] = ConfigError) -> float:
    """A width or depth multiple: a finite number in (0, limit]; ``'1e9'`` (YAML 1.1 text) counts as 1e9."""
    v = _number(value)
    if v is None or not math.isfinite(v) or v <= 0:
        raise error(f"{what} must be a finite number > 0, got {_short(value)}")
    if v > MAX_MULTIPLE.value:
        raise error(f"{what} = {v:g} is too large: {MAX_MULTIPLE.hint()}")
    return v


def image_size(value: Any, what: str = "imgsz", *, stride: int = 1, low: int = MIN_IMGSZ,
               error: type[LatlabError] = ConfigError) -> int:
    """A square input size: an integer in ``[max(low, stride), limit]`` and a multiple of ``stride``."""
    low = max(low, stride)
    if not _is_int(value) or value < low:
        raise error(f"{what} must be an integer >= {low}, got {_short(value)}")
    if value > MAX_IMGSZ.value:
        raise error(f"{what} = {value} is too large: {MAX_IMGSZ.hint()}")
    if value % stride:
        raise error(f"{what} {value} is not a multiple of the model's max stride {stride}; "
                    f"try {max(stride, round(value / stride) * stride)}")
    return int(value)


def length(value: Sized, what: str, *, limit: Limit = MAX_LIST, error: type[LatlabError] = ConfigError) -> int:
    """The length of a list-like input, at most ``limit``."""
    n = len(value)
    if n > limit.value:
        raise error(f"{what} has {n} entries: {limit.hint()}")
    return n


def memory_estimate(n_bytes: float, what: str, *, limit: Limit, error: type[LatlabError] = ConfigError) -> float:
    """Refuse work whose estimated memory or disk use ``n_bytes`` exceeds ``limit`` (in GB)."""
    gb = n_bytes / 1e9
    if gb > limit.value:
        raise error(f"{what} needs about {gb:.3g} GB (estimate): {limit.hint()}")
    return gb


def output_dir(path: Path | str, what: str = "--out", *, error: type[LatlabError] = ConfigError) -> Path:
    """A run folder to write: refuse an existing file (checked before any timing, not after)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise error(f"{what} {path} is an existing file; expected a folder (or a path to create one)")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise error(f"{what} {path}: {parent} is a file, so the folder cannot be created")
    return path


def output_file(path: Path | str, what: str = "--out", *, error: type[LatlabError] = ConfigError) -> Path:
    """A file to write: refuse an existing folder and a parent that is a file."""
    path = Path(path)
    if path.is_dir():
        raise error(f"{what} {path} is a folder; expected a file name, e.g. {path / 'out.json'}")
    for parent in path.parents:
        if parent.exists() and not parent.is_dir():
            raise error(f"{what} {path}: {parent} is a file, so the file cannot be created")
    return path


def _short(value: Any, n: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= n else f"{text[:n]}... ({len(text)} characters)"
