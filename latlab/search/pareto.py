"""Pareto front and hypervolume of N objectives, each minimised or maximised.

The one implementation the export (``pareto`` column), the report page and the regret benchmark use.
Values are turned into minimisation internally (maximised columns negated). Hypervolume is exact in any
dimension: a sweep for one and two objectives, slicing along the first objective for more (HSO, fine for
the fronts of a search: tens of points, a handful of objectives).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MINIMIZE, MAXIMIZE = "minimize", "maximize"
DIRECTIONS = (MINIMIZE, MAXIMIZE)


def signs(directions: Sequence[str]) -> np.ndarray:
    """+1 for a minimised objective, −1 for a maximised one (an unknown direction is an error)."""
    bad = [d for d in directions if d not in DIRECTIONS]
    if bad:
        raise ValueError(f"direction {bad[0]!r}: expected {MINIMIZE!r} or {MAXIMIZE!r}")
    return np.array([1.0 if d == MINIMIZE else -1.0 for d in directions])


def _as_min(values: Sequence[Sequence[float]] | np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """``values`` [n, k] as a float array to minimise in every column."""
    k = len(directions)
    pts = np.asarray(values, dtype=float).reshape(-1, k)
    return pts * signs(directions)


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """``a`` is at least as good as ``b`` in every objective and strictly better in one."""
    x, y = _as_min([a], directions)[0], _as_min([b], directions)[0]
    return bool(np.all(x <= y) and np.any(x < y))


def pareto_mask(values: Sequence[Sequence[float]] | np.ndarray, directions: Sequence[str], *,
                ties: str = "all") -> np.ndarray:
    """True for rows of ``values`` [n, k] that no other row dominates.

    ``ties="all"`` keeps every copy of a non-dominated point; ``ties="first"`` keeps only the first.
    """
    if ties not in ("all", "first"):
        raise ValueError(f"ties={ties!r}: expected 'all' or 'first'")
    pts = _as_min(values, directions)
    keep = np.ones(len(pts), dtype=bool)
    for i, p in enumerate(pts):
        better = np.all(pts <= p, axis=1) & np.any(pts < p, axis=1)
        if better.any() or (ties == "first" and np.all(pts[:i] == p, axis=1).any()):
            keep[i] = False
    return keep


def pareto_front(values: Sequence[Sequence[float]] | np.ndarray, directions: Sequence[str]) -> np.ndarray:
    """The non-dominated rows (one per distinct point), sorted by the first objective, best first."""
    k = len(directions)
    pts = np.asarray(values, dtype=float).reshape(-1, k)
    front = pts[pareto_mask(pts, directions, ties="first")]
    order = np.lexsort(tuple((front * signs(directions))[:, j] for j in reversed(range(k))))
    return front[order]


def hypervolume(values: Sequence[Sequence[float]] | np.ndarray, ref: Sequence[float],
                directions: Sequence[str]) -> float:
    """Volume dominated by ``values`` [n, k] and bounded by the reference point ``ref`` (the worst value of
    each objective). Points not strictly better than ``ref`` in every objective add nothing."""
    r = _as_min([ref], directions)[0]
    pts = _as_min(values, directions)
    pts = pts[np.all(pts < r, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[pareto_mask(pts, [MINIMIZE] * len(r), ties="first")]
    return float(_hv_min(pts, r))


def _hv_min(pts: np.ndarray, ref: np.ndarray) -> float:
    """Exact hypervolume of minimised points that all lie strictly inside ``ref``."""
    k = pts.shape[1]
    if k == 1:
        return float(ref[0] - pts[:, 0].min())
    if k == 2:
        hv, prev = 0.0, ref[1]
        for x, y in sorted(map(tuple, pts)):
            if y < prev:
                hv += (ref[0] - x) * (prev - y)
                prev = y
        return hv
    # slice along objective 0: between consecutive x values, the points with smaller x span a (k-1)-D volume
    order = np.argsort(pts[:, 0], kind="stable")
    pts = pts[order]
    bounds = [*pts[1:, 0], ref[0]]
    hv = 0.0
    for i, upper in enumerate(bounds):
        width = upper - pts[i, 0]
        if width > 0:
            hv += width * _hv_min(pts[: i + 1, 1:], ref[1:])
    return hv
