"""Named search objectives: what a study optimises, one descriptor each.

A study records the names of its objectives (study attribute ``latlab.objectives``); trial values, study
directions, export columns, report axes and the Pareto front follow that list. A study without the
attribute is read as ``("latency_ms", "map")``, the pair every study made before objectives were named used. Adding an objective = one :func:`register_objective` call whose ``attr`` is a
trial user attribute the trial evaluation writes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from latlab.errors import SearchError
from latlab.search.pareto import DIRECTIONS

OBJECTIVES_ATTR = "latlab.objectives"  # study user attribute holding the names
MEASURED_BY = ("latency", "training", "counter")


@dataclass(frozen=True)
class Objective:
    """One objective: ``attr`` is the trial user attribute (and trials-table column) holding its value;
    ``measured_by`` says which step writes it (``latency``: the latency estimate, ``training``: the accuracy
    estimator (the short training or a proxy), ``counter``: the meta-tensor counts); ``missing`` is the value of a trial whose measurement did
    not run (an accuracy of a candidate over the latency budget, not trained: 0)."""

    name: str
    unit: str
    direction: str
    attr: str
    label: str
    measured_by: str
    description: str = ""
    missing: float | None = None

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise SearchError(f"objective {self.name!r}: direction {self.direction!r}, expected one of "
                              f"{', '.join(DIRECTIONS)}")
        if self.measured_by not in MEASURED_BY:
            raise SearchError(f"objective {self.name!r}: measured_by {self.measured_by!r}, expected one of "
                              f"{', '.join(MEASURED_BY)}")

    @property
    def axis_title(self) -> str:
        """Axis title for reports: label and unit."""
        return f"{self.label} ({self.unit})" if self.unit else self.label

    def value(self, attrs: Mapping[str, Any]) -> float:
        """This objective's value from a trial's user attributes (``missing`` when absent)."""
        v = attrs.get(self.attr)
        if v is None:
            if self.missing is None:
                raise SearchError(f"objective {self.name!r}: the trial has no {self.attr!r} attribute")
            return float(self.missing)
        return float(v)


OBJECTIVES: dict[str, Objective] = {}
DEFAULT_OBJECTIVES = ("latency_ms", "map")
CONSTRAINED_OBJECTIVES = ("map",)


def register_objective(obj: Objective) -> Objective:
    """Add ``obj`` to the registry (a name already taken by another descriptor is an error)."""
    if obj.name in OBJECTIVES and OBJECTIVES[obj.name] != obj:
        raise SearchError(f"objective {obj.name!r} is already registered")
    OBJECTIVES[obj.name] = obj
    return obj


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; an unknown name is an error listing the known ones."""
    try:
        return OBJECTIVES[name]
    except KeyError:
        raise SearchError(f"objective {name!r}: expected one of {', '.join(OBJECTIVES)}") from None


def resolve(names: Iterable[str]) -> list[Objective]:
    """Descriptors of ``names`` in order; unknown or repeated names are errors."""
    names = list(names)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise SearchError(f"objective {dup[0]!r} given twice")
    return [get_objective(n) for n in names]


def directions(objectives: Sequence[Objective]) -> list[str]:
    return [o.direction for o in objectives]


def study_objective_names(user_attrs: Mapping[str, Any]) -> list[str]:
    """The objectives a study's front is drawn over (``latlab.objectives``; a study made before names were
    recorded: latency and mAP). A pareto study's trials return these values, in this order; a constrained
    study's trials return ``map`` alone (the others are recorded, the front is still drawn over them)."""
    names = user_attrs.get(OBJECTIVES_ATTR)
    return [str(n) for n in names] if names else list(DEFAULT_OBJECTIVES)

for _o in (
    Objective("latency_ms", "ms", "minimize", "latency_ms", "latency", "latency",
              "latency estimate of one forward (p10 by default) on the study's device"),
    Objective("map", "", "maximize", "map", "mAP", "training", "mAP50-95 after the short training", missing=0.0),
    Objective("map50", "", "maximize", "map50", "mAP50", "training", "mAP50 after the short training",
              missing=0.0),
    Objective("accuracy_score", "", "maximize", "accuracy_score", "accuracy score", "training",
              "the accuracy estimator's score (a zero-cost proxy or baseline: unit-less, higher is better)",
              missing=0.0),
    Objective("params", "", "minimize", "params", "params", "counter", "parameters"),
    Objective("madds", "", "minimize", "madds", "multiply-adds", "counter",
              "multiply-adds of one 1×3×imgsz×imgsz forward"),
    Objective("mac_bytes", "bytes", "minimize", "mac_bytes", "memory access", "counter",
              "bytes read and written by one forward"),
):
    register_objective(_o)
