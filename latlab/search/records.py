"""What a search hands back: one :class:`TrialRecord` per finished trial, a :class:`SearchResult` per run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial


@dataclass
class TrialRecord:
    """What one finished trial produced (for progress displays)."""

    number: int
    state: str
    arch: str
    baseline: str
    latency_ms: float
    map: float
    map50: float
    feasible: bool | None
    note: str = ""
    accuracy_score: float = float("nan")


@dataclass
class SearchResult:
    """Summary of a ``run_search`` call; ``trials`` is :func:`latlab.search.export.trials_frame`."""

    study: str
    storage: str
    storage_kind: str
    mode: str
    workdir: Path
    n_run_here: int
    trials: Any
    best: dict[str, Any] | None
    wall_s: float
    worker_notes: list[str] = field(default_factory=list)


def is_baseline(t: FrozenTrial) -> bool:
    """A seed-detector trial (``baseline`` user attribute), not a point of the space."""
    return "baseline" in t.user_attrs


def trial_record(t: FrozenTrial) -> TrialRecord:
    """The record of a finished trial (NaN where it has no latency or mAP)."""
    a = t.user_attrs
    return TrialRecord(number=t.number, state=t.state.name, arch=a.get("arch", ""), baseline=a.get("baseline", ""),
                       latency_ms=float(a.get("latency_ms", float("nan"))), map=float(a.get("map", float("nan"))),
                       map50=float(a.get("map50", float("nan"))), feasible=a.get("feasible"),
                       note=str(a.get("note", "")),
                       accuracy_score=float(a.get("accuracy_score", float("nan"))))
