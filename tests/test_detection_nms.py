"""Own NMS against a brute-force greedy reference written with plain Python floats."""

import random

import pytest
import torch

from latlab.detection.nms import batched_nms, box_iou, nms, non_max_suppression


def iou_ref(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_ref(boxes, scores, classes, thr):
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    kept = []
    for i in order:
        if all(classes[k] != classes[i] or iou_ref(boxes[i], boxes[k]) <= thr for k in kept):
            kept.append(i)
    return kept


def random_boxes(rng, n, nc):
    boxes, scores, classes = [], [], []
    for _ in range(n):
        x, y = rng.uniform(0, 80), rng.uniform(0, 80)
        w, h = rng.uniform(2, 40), rng.uniform(2, 40)
        boxes.append([x, y, x + w, y + h])
        scores.append(rng.random())
        classes.append(rng.randrange(nc))
    return boxes, scores, classes


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("thr", [0.3, 0.5, 0.7])
def test_batched_nms_matches_brute_force(seed, thr):
    rng = random.Random(seed)
    boxes, scores, classes = random_boxes(rng, rng.randrange(1, 120), nc=3)
    keep = batched_nms(torch.tensor(boxes, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64),
                       torch.tensor(classes), thr)
    assert keep.tolist() == greedy_ref(boxes, scores, classes, thr)


@pytest.mark.parametrize("seed", range(4))
def test_class_agnostic_nms_matches_brute_force(seed):
    rng = random.Random(100 + seed)
    boxes, scores, _ = random_boxes(rng, 80, nc=1)
    keep = nms(torch.tensor(boxes, dtype=torch.float64), torch.tensor(scores, dtype=torch.float64), 0.45)
    assert keep.tolist() == greedy_ref(boxes, scores, [0] * len(boxes), 0.45)


def test_box_iou_hand_values():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]])
    assert box_iou(a, b)[0].tolist() == pytest.approx([50 / 150, 0.0, 1.0])


def test_non_max_suppression_decodes_and_filters():
    # Two overlapping boxes of class 1 (one suppressed), one class-0 box on top of them (kept: other class),
    # one below the confidence threshold. Rows: cx, cy, w, h, obj, cls0, cls1.
    pred = torch.tensor([[[50, 50, 20, 20, 0.9, 0.1, 0.9],
                          [51, 50, 20, 20, 0.8, 0.1, 0.9],
                          [50, 50, 20, 20, 0.9, 0.8, 0.0],
                          [10, 10, 4, 4, 0.01, 0.5, 0.5]]])
    out = non_max_suppression(pred, conf_thres=0.25, iou_thres=0.5, multi_label=False)
    assert len(out) == 1
    det = out[0]
    assert det.shape == (2, 6)
    assert det[:, 5].tolist() == [1.0, 0.0]
    assert det[0, :4].tolist() == pytest.approx([40, 40, 60, 60])
    assert det[:, 4].tolist() == pytest.approx([0.81, 0.72])


def test_empty_inputs():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).numel() == 0
    out = non_max_suppression(torch.zeros(2, 5, 7), conf_thres=0.1)
    assert [o.shape for o in out] == [(0, 6), (0, 6)]
