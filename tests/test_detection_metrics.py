"""mAP against hand-computed COCO values (101-point interpolated AP, IoU 0.50:0.05:0.95)."""

import math

import pytest
import torch

from latlab.detection.metrics import PER_CLASS_COLUMNS, mean_average_precision
from latlab.errors import DataError


def t(rows, cols):
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, cols)


GT = [t([[0, 10, 10, 50, 50], [1, 60, 60, 100, 90]], 5), t([[0, 0, 0, 30, 30]], 5)]
PERFECT = [t([[10, 10, 50, 50, 0.9, 0], [60, 60, 100, 90, 0.8, 1]], 6), t([[0, 0, 30, 30, 0.7, 0]], 6)]


def test_perfect_predictions_score_one():
    r = mean_average_precision(PERFECT, GT)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(1.0)
    pc = r["per_class"]
    assert list(pc.columns) == PER_CLASS_COLUMNS
    assert pc["ap"].tolist() == pytest.approx([1.0, 1.0])
    assert pc["n_targets"].tolist() == [2, 1]


def test_hand_computed_ap_with_a_false_positive_between_two_hits():
    # One class, 2 targets; ranked: hit (0.9), miss (0.8), hit (0.7).
    # Recall/precision: (0.5, 1), (0.5, 0.5), (1.0, 2/3). Interpolated precision is 1 for recall <= 0.5
    # (51 of COCO's 101 recall points) and 2/3 above it (50 points): AP = (51 + 50 * 2/3) / 101.
    gt = [t([[0, 10, 10, 50, 50], [0, 60, 60, 100, 100]], 5)]
    pred = [t([[10, 10, 50, 50, 0.9, 0], [200, 200, 220, 220, 0.8, 0], [60, 60, 100, 100, 0.7, 0]], 6)]
    r = mean_average_precision(pred, gt)
    expected = (51 + 50 * 2 / 3) / 101
    assert r["map50"] == pytest.approx(expected, abs=1e-9)
    assert r["map"] == pytest.approx(expected, abs=1e-9)  # exact boxes: same at every IoU threshold


def test_one_missing_box_halves_recall():
    # Class 0 has 2 targets, only one found: precision 1 up to recall 0.5 → 51/101; class 1 perfect.
    r = mean_average_precision([PERFECT[0], t([], 6)], GT)
    assert r["per_class"]["ap50"].tolist() == pytest.approx([51 / 101, 1.0])
    assert r["map50"] == pytest.approx((51 / 101 + 1.0) / 2)


def test_duplicate_detections_are_false_positives_after_the_match():
    # A duplicate ranked *below* the match does not lower AP (recall is already 1 at precision 1) ...
    gt = [t([[0, 0, 0, 10, 10]], 5)]
    below = [t([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0]], 6)]
    assert mean_average_precision(below, gt)["map50"] == pytest.approx(1.0)
    # ... but a duplicate of an already matched box that shares the score ladder with another target does:
    gt2 = [t([[0, 0, 0, 10, 10], [0, 50, 50, 60, 60]], 5)]
    pred2 = [t([[0, 0, 10, 10, 0.9, 0], [0, 0, 10, 10, 0.8, 0], [50, 50, 60, 60, 0.7, 0]], 6)]
    assert mean_average_precision(pred2, gt2)["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_wrong_class_scores_zero():
    gt = [t([[0, 0, 0, 10, 10]], 5)]
    pred = [t([[0, 0, 10, 10, 0.9, 1]], 6)]
    r = mean_average_precision(pred, gt, nc=2)
    assert r["map50"] == 0.0
    assert r["per_class"]["ap50"].iloc[0] == 0.0
    assert math.isnan(r["per_class"]["ap50"].iloc[1])  # no targets of class 1: not part of the mean


def test_empty_images_and_false_positives_on_them():
    gt = [t([[0, 10, 10, 50, 50]], 5), t([], 5), t([], 5)]
    # Empty images without predictions change nothing.
    assert mean_average_precision([t([[10, 10, 50, 50, 0.5, 0]], 6), t([], 6), t([], 6)], gt)["map50"] == pytest.approx(1.0)
    # A higher-scored false positive on an empty image: precision 0 then 1/2 at recall 1 → AP 0.5.
    pred = [t([[10, 10, 50, 50, 0.5, 0]], 6), t([[0, 0, 20, 20, 0.9, 0]], 6), t([], 6)]
    assert mean_average_precision(pred, gt)["map50"] == pytest.approx(0.5)


def test_no_predictions_and_no_targets():
    assert mean_average_precision([t([], 6)], [t([[0, 0, 0, 5, 5]], 5)])["map50"] == 0.0
    r = mean_average_precision([t([], 6)], [t([], 5)])
    assert math.isnan(r["map50"]) and math.isnan(r["map"])


def test_map_averages_iou_thresholds():
    # Prediction overlapping its target with IoU 0.62 (10x6.2 inside 10x10): a hit at 0.50, 0.55, 0.60 only.
    gt = [t([[0, 0, 0, 10, 10]], 5)]
    pred = [t([[0, 0, 10, 6.2, 0.9, 0]], 6)]
    r = mean_average_precision(pred, gt)
    assert r["map50"] == pytest.approx(1.0)
    assert r["map"] == pytest.approx(0.3)


def test_bad_shapes_and_class_ids_raise():
    with pytest.raises(DataError, match=r"preds\[0\]"):
        mean_average_precision([torch.zeros(2, 5)], [t([], 5)])
    with pytest.raises(DataError, match="images"):
        mean_average_precision([t([], 6)], [])
    with pytest.raises(DataError, match="out of range"):
        mean_average_precision([t([], 6)], [t([[3, 0, 0, 5, 5]], 5)], nc=2)


def test_pycocotools_prints_nothing(capsys):
    mean_average_precision(PERFECT, GT)
    assert capsys.readouterr().out == ""
