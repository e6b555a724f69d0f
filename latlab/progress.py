"""Progress reporting: library code talks to a small protocol; the CLI renders it with rich.

A job (``run_interleaved``, ``run_guidelines``, ``train``, ``build_lut``) opens one *task* per thing it
counts (rounds, configurations, iterations, seconds of a time budget), advances it and may change its
description; a notebook or a test can pass its own :class:`ProgressReporter` instead of ``True``/``False``.
:func:`as_progress` turns the ``progress`` argument those jobs take into a reporter:
``True`` → :class:`RichProgress`, ``False``/``None`` → :class:`NullProgress`, a reporter → itself.

``show`` names what the rich renderer draws for a task (the other renderers ignore it): ``"label"`` (the
task's fixed label), ``"description"`` (its current description), ``"bar"``, ``"count"`` (completed/total),
``"percent"``, ``"elapsed"``, ``"remaining"``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, runtime_checkable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from latlab.errors import ConfigError

DEFAULT_SHOW = ("description", "bar", "count")
_COLUMN_FACTORIES: dict[str, Callable[[], ProgressColumn]] = {
    "label": lambda: TextColumn("{task.fields[label]}"),
    "description": lambda: TextColumn("{task.description}"),
    "bar": BarColumn,
    "count": MofNCompleteColumn,
    "percent": lambda: TextColumn("{task.percentage:>3.0f}%"),
    "elapsed": TimeElapsedColumn,
    "remaining": TimeRemainingColumn,
}
COLUMNS = tuple(_COLUMN_FACTORIES)


@runtime_checkable
class ProgressTask(Protocol):
    """One bar: ``advance`` by steps, or ``set`` the completed amount (e.g. seconds of a time budget)."""

    def advance(self, n: float = 1, *, description: str | None = None) -> None: ...

    def set(self, *, completed: float | None = None, description: str | None = None) -> None: ...


@runtime_checkable
class ProgressReporter(Protocol):
    """What library code reports progress to. ``task`` opens a bar for the ``with`` block; ``log`` prints
    a line that stays (above any live bar). ``transient`` bars disappear when done."""

    def task(self, label: str, total: float | None, *, description: str | None = None,
             show: Sequence[str] = DEFAULT_SHOW, transient: bool = True) -> AbstractContextManager[ProgressTask]:
        ...

    def log(self, message: str) -> None: ...


class _NullTask:
    def advance(self, n: float = 1, *, description: str | None = None) -> None:
        pass

    def set(self, *, completed: float | None = None, description: str | None = None) -> None:
        pass


class NullProgress:
    """Reports nothing (``progress=False``)."""

    @contextmanager
    def task(self, label: str, total: float | None, *, description: str | None = None,
             show: Sequence[str] = DEFAULT_SHOW, transient: bool = True) -> Iterator[ProgressTask]:
        yield _NullTask()

    def log(self, message: str) -> None:
        pass


def _column(name: str) -> ProgressColumn:
    if name not in _COLUMN_FACTORIES:
        raise ConfigError(f"unknown progress column {name!r}; known: {', '.join(COLUMNS)}")
    return _COLUMN_FACTORIES[name]()


class _RichTask:
    def __init__(self, bar: Progress, task_id: TaskID):
        self._bar, self._id = bar, task_id

    def advance(self, n: float = 1, *, description: str | None = None) -> None:
        if description is None:
            self._bar.update(self._id, advance=n)
        else:
            self._bar.update(self._id, advance=n, description=description)

    def set(self, *, completed: float | None = None, description: str | None = None) -> None:
        fields: dict[str, Any] = {}
        if completed is not None:
            fields["completed"] = completed
        if description is not None:
            fields["description"] = description
        self._bar.update(self._id, **fields)


class RichProgress:
    """Rich bars on the terminal. A task opened while another is live joins its display (and its columns);
    the outermost task decides the columns. Transient bars go to stderr, kept ones (and ``log`` lines
    printed without a live bar) to stdout, unless a ``console`` is given for all."""

    def __init__(self, console: Console | None = None):
        self.console = console
        self._live: Progress | None = None

    @contextmanager
    def task(self, label: str, total: float | None, *, description: str | None = None,
             show: Sequence[str] = DEFAULT_SHOW, transient: bool = True) -> Iterator[ProgressTask]:
        text = label if description is None else description
        if self._live is not None:  # nested: one more line in the live display, removed when done
            bar = self._live
            task_id = bar.add_task(text, total=total, label=label)
            try:
                yield _RichTask(bar, task_id)
            finally:
                bar.remove_task(task_id)
            return
        console = self.console or Console(stderr=transient)
        bar = Progress(*[_column(c) for c in show], console=console, transient=transient)
        task_id = bar.add_task(text, total=total, label=label)
        self._live = bar
        try:
            with bar:
                yield _RichTask(bar, task_id)
        finally:
            self._live = None

    def log(self, message: str) -> None:
        console = self._live.console if self._live is not None else (self.console or Console())
        console.print(message, highlight=False)


def as_progress(progress: bool | ProgressReporter | None) -> ProgressReporter:
    """The reporter for a job's ``progress`` argument: True → rich bars, False/None → nothing, a reporter
    (anything with ``task`` and ``log``) → itself."""
    if progress is None or progress is False:
        return NullProgress()
    if progress is True:
        return RichProgress()
    if isinstance(progress, ProgressReporter):
        return progress
    raise ConfigError(f"progress must be True, False or a ProgressReporter (task, log), got {progress!r}")


@contextmanager
def ticking(task: ProgressTask, budget_s: float, interval_s: float = 0.25) -> Iterator[None]:
    """Move ``task`` along the seconds of a time budget from a background thread while the block runs (for a
    call that reports nothing itself, e.g. an interleaved measurement with its own bar off)."""
    if isinstance(task, _NullTask):
        yield
        return
    stop = threading.Event()
    start = time.perf_counter()

    def tick() -> None:
        while not stop.wait(interval_s):
            task.set(completed=min(time.perf_counter() - start, budget_s))

    thread = threading.Thread(target=tick, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
