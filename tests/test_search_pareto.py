"""latlab.search.pareto: N-D fronts and exact hypervolumes against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from latlab.search.pareto import dominates, hypervolume, pareto_front, pareto_mask

MIN2 = ("minimize", "minimize")
LAT_ACC = ("minimize", "maximize")
MIN3 = ("minimize", "minimize", "minimize")


def test_front_2d_with_a_maximised_objective_and_ties():
    # (latency, accuracy): (3, .4) is dominated by (2, .5); (2, .5) appears twice
    pts = [[1.0, 0.2], [2.0, 0.5], [3.0, 0.4], [4.0, 0.7], [2.0, 0.5]]
    assert pareto_mask(pts, LAT_ACC).tolist() == [True, True, False, True, True]
    assert pareto_mask(pts, LAT_ACC, ties="first").tolist() == [True, True, False, True, False]
    assert pareto_front(pts, LAT_ACC).tolist() == [[1.0, 0.2], [2.0, 0.5], [4.0, 0.7]]
    assert dominates([2.0, 0.5], [3.0, 0.4], LAT_ACC) and not dominates([2.0, 0.5], [2.0, 0.5], LAT_ACC)


def test_front_3d():
    pts = np.array([[1, 5, 5], [5, 1, 5], [5, 5, 1], [2, 2, 2], [3, 3, 3], [1, 5, 6]], dtype=float)
    # (3,3,3) is dominated by (2,2,2); (1,5,6) by (1,5,5); the other four are not comparable
    assert pareto_mask(pts, MIN3).tolist() == [True, True, True, True, False, False]
    # flipping the third objective to maximise makes (1,5,6) beat (1,5,5)
    assert pareto_mask(pts, ("minimize", "minimize", "maximize")).tolist()[0] is False


def test_hypervolume_2d_by_hand():
    # staircase of (1,3), (2,2), (3,1) below ref (4,4): 3·1 + 2·1 + 1·1 ... as rectangles: x-slices
    # [1,2)×(4-3) + [2,3)×(4-2) + [3,4)×(4-1) = 1 + 2 + 3 = 6
    assert hypervolume([[1, 3], [2, 2], [3, 1]], [4, 4], MIN2) == pytest.approx(6.0)
    # a dominated point and a point outside the box change nothing
    assert hypervolume([[1, 3], [2, 2], [3, 1], [3, 3], [5, 0]], [4, 4], MIN2) == pytest.approx(6.0)
    # latency ↓ / accuracy ↑ with ref (5, 0): (1,.2),(2,.5),(4,.7) → 4·.2 + 3·.3 + 1·.2 = 1.9
    assert hypervolume([[1, .2], [2, .5], [4, .7]], [5, 0], LAT_ACC) == pytest.approx(1.9)
    assert hypervolume(np.empty((0, 2)), [5, 0], LAT_ACC) == 0.0


def test_hypervolume_3d_by_hand():
    ref = [4.0, 4.0, 4.0]
    assert hypervolume([[1, 1, 1]], ref, MIN3) == pytest.approx(27.0)
    # two boxes 3·2·2 (from (1,2,2)) and 2·3·2 (from (2,1,2)) overlapping in 2·2·2 → 12 + 12 - 8 = 16
    assert hypervolume([[1, 2, 2], [2, 1, 2]], ref, MIN3) == pytest.approx(16.0)
    # three boxes (1,3,3), (3,1,3), (3,3,1): each 3·1·1 = 3 with no pairwise overlap beyond the corner cube
    # [3,4]^3 (volume 1) shared by all: 3 + 3 + 3 - 1 - 1 - 1 + 1 = 7
    assert hypervolume([[1, 3, 3], [3, 1, 3], [3, 3, 1]], ref, MIN3) == pytest.approx(7.0)
    # a maximised third objective: (1, 1, acc 0.5) against ref (4, 4, acc 0) → 3·3·0.5
    assert hypervolume([[1, 1, 0.5]], [4, 4, 0.0], ("minimize", "minimize", "maximize")) == pytest.approx(4.5)


def test_hypervolume_3d_matches_optuna_on_random_points():
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(1)
    pts = rng.uniform(0, 1, (25, 3))
    ref = np.array([1.1, 1.1, 1.1])
    front = pts[pareto_mask(pts, MIN3)]
    assert hypervolume(pts, ref, MIN3) == pytest.approx(compute_hypervolume(front, ref))


def test_unknown_direction_is_an_error():
    with pytest.raises(ValueError, match="direction 'up'"):
        pareto_mask([[1.0]], ["up"])
