"""Progress: library code reports to a ProgressReporter; True/False keep working; rich renders it."""

import io
from contextlib import contextmanager

import pytest
import torch
from rich.console import Console
from torch import nn

from latlab.errors import ConfigError
from latlab.guidelines.run import run_guidelines
from latlab.profiling.compare import run_interleaved
from latlab.progress import NullProgress, ProgressReporter, RichProgress, as_progress


class Recording:
    """A ProgressReporter that keeps every call: tasks (label, total), advances, sets and log lines."""

    def __init__(self):
        self.tasks, self.events, self.logs = [], [], []

    @contextmanager
    def task(self, label, total, *, description=None, show=(), transient=True):
        self.tasks.append((label, total))
        rec = self

        class Task:
            def advance(self, n=1, *, description=None):
                rec.events.append((label, "advance", n))

            def set(self, *, completed=None, description=None):
                rec.events.append((label, "set", completed))

        yield Task()
        self.events.append((label, "closed", None))

    def log(self, message):
        self.logs.append(message)


def test_as_progress_maps_bools_and_passes_reporters_through():
    assert isinstance(as_progress(False), NullProgress) and isinstance(as_progress(None), NullProgress)
    assert isinstance(as_progress(True), RichProgress)
    rec = Recording()
    assert isinstance(rec, ProgressReporter) and as_progress(rec) is rec
    with pytest.raises(ConfigError, match="progress must be"):
        as_progress("yes")


def test_run_interleaved_reports_each_round_of_a_fixed_count():
    rec = Recording()
    net = nn.Conv2d(3, 4, 3)
    run = run_interleaved({"net": net}, torch.zeros(1, 3, 8, 8), rounds=5, warmup_rounds=0, progress=rec,
                          check_busy=False, speed_reference=False)
    assert run.rounds == 5
    assert rec.tasks == [("timing", 5)]
    assert [e for e in rec.events if e[1] == "set"] == [("timing", "set", r) for r in range(1, 6)]
    assert rec.events[-1] == ("timing", "closed", None)


def test_run_guidelines_counts_every_configuration_twice_and_follows_each_budget():
    rec = Recording()
    res = run_guidelines("G4", quick=True, imgsz=8, blocks=1, budget_s=0.3, progress=rec)
    n = len(res.tables["G4"])  # G4 at ×1: 4 configurations
    assert n == 4
    assert rec.tasks[0] == ("guidelines", 2 * n)
    assert sum(e[2] for e in rec.events if e[0] == "guidelines" and e[1] == "advance") == 2 * n
    assert rec.tasks[1] == ("timing G4 (4 configurations)", 0.3)


def test_rich_renderer_nests_a_task_in_the_live_display_and_logs_above_it():
    out = io.StringIO()
    rich = RichProgress(console=Console(file=out, force_terminal=False, width=80))
    with rich.task("outer", 3, show=("description", "bar", "count"), transient=False) as outer:
        outer.advance(description="step one")
        with rich.task("inner", 1.0) as inner:
            inner.set(completed=0.5)
        rich.log("a line that stays")
        outer.advance(2)
    text = out.getvalue()
    assert "a line that stays" in text and "3/3" in text
    with pytest.raises(ConfigError, match="unknown progress column"), rich.task("x", 1, show=("nope",)):
        pass
