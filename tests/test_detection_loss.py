"""Detection loss: CIoU and target assignment against hand calculations, the value the previous
implementation gave on a fixed batch, loss decrease, and overfitting a tiny set."""

import math
from dataclasses import fields

import pytest
import torch

from latlab.detection.data import load_dataset
from latlab.detection.loss import (
    LevelTargets,
    LossHyp,
    YoloLoss,
    assign_cells,
    build_targets,
    ciou,
    match_anchors,
    objectness_targets,
)
from latlab.detection.train import train
from latlab.ops.builder import build_model


def small_detector(nc=10):
    torch.manual_seed(0)
    return build_model("yolov5n", nc=nc)


def test_ciou_hand_values():
    a = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    assert ciou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    # Same size, shifted by 1: IoU 2/6, enclosing box 3x2 → diagonal² 13, centre distance² 1, no aspect term.
    b = torch.tensor([[2.0, 1.0, 2.0, 2.0]])
    assert ciou(a, b).item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    # Same centre, 2x2 inside 4x1: IoU 2/(4+4-2), diag² 16+4, aspect term v = 4/π²·(atan 4 − atan 1)², α = v/(v−IoU+1).
    c = torch.tensor([[1.0, 1.0, 4.0, 1.0]])
    iou = 2 / 6
    v = 4 / math.pi**2 * (math.atan(4) - math.atan(1)) ** 2
    assert ciou(a, c).item() == pytest.approx(iou - v * v / (v - iou + 1), abs=1e-6)


def test_hyp_scaling_follows_yolov5():
    h = LossHyp().scaled(nc=10, nl=3, imgsz=160)
    assert h.box == pytest.approx(0.05)
    assert h.cls == pytest.approx(0.5 * 10 / 80)
    assert h.obj == pytest.approx((160 / 640) ** 2)


def test_ciou_all_four_terms_by_hand():
    # A: corners (0,0)-(2,2). B: corners (1,1)-(4,2). Overlap 1x1, union 4 + 3 - 1 = 6.
    a = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    b = torch.tensor([[2.5, 1.5, 3.0, 1.0]])
    iou = 1 / 6
    enclosing_diagonal2 = 4**2 + 2**2  # enclosing box (0,0)-(4,2)
    centre_distance2 = 1.5**2 + 0.5**2
    v = 4 / math.pi**2 * math.atan(0.5) ** 2  # atan(3) - atan(1) = atan(1/2)
    alpha = v / (1 - iou + v)
    expected = iou - centre_distance2 / enclosing_diagonal2 - alpha * v
    assert expected == pytest.approx(0.03342, abs=1e-5)
    assert ciou(a, b).item() == pytest.approx(expected, abs=1e-6)
    assert ciou(b, a).item() == pytest.approx(expected, abs=1e-6)


def test_match_anchors_by_width_height_ratio():
    wh = torch.tensor([[1.0, 1.0], [2.0, 0.5]])
    anchors = torch.tensor([[3.9, 1.0], [4.1, 1.0], [1.0, 0.2], [0.3, 0.3]])
    # Box 1x1: ratios 3.9 (in), 4.1 (out), height 1/0.2 = 5 (out), 1/0.3 = 3.33 (in).
    # Box 2x0.5: 3.9/2 and 2 (in); 4.1/2 and 2 (in); 2 and 2.5 (in); 2/0.3 = 6.7 (out).
    assert match_anchors(wh, anchors, 4.0).tolist() == [[True, True], [False, True], [False, True], [True, False]]
    assert match_anchors(wh, anchors, 2.0).tolist() == [[False, False]] * 4


def test_assign_cells_own_cell_and_nearest_neighbours():
    centres = torch.tensor([[2.4, 5.6], [0.3, 0.2], [7.7, 7.9], [3.6, 4.1]])
    rows, cells = assign_cells(centres, nx=8, ny=8)
    # Own cells first; then x neighbours (left of 2.4, right of 3.6; 0.3 and 7.7 would leave the grid);
    # then y neighbours (below 5.6, above 4.1; 0.2 and 7.9 would leave the grid).
    assert rows.tolist() == [0, 1, 2, 3, 0, 3, 0, 3]
    assert cells.tolist() == [[2, 5], [0, 0], [7, 7], [3, 4], [1, 5], [4, 4], [2, 6], [3, 3]]
    # A centre on the far edge of the image (cx = cy = 1) stays on the grid: own cell clamped to (7, 7).
    rows, cells = assign_cells(torch.tensor([[8.0, 3.2]]), nx=8, ny=8)
    assert rows.tolist() == [0, 0, 0] and cells.tolist() == [[7, 3], [7, 3], [7, 2]]
    rows, cells = assign_cells(torch.tensor([[3.2, 8.0]]), nx=8, ny=8)
    assert cells.tolist() == [[3, 7], [2, 7], [3, 7]]
    # On a cell edge (x = 4.0): own cell 4, the neighbour across that edge is 3; y fraction 0.5 goes down.
    rows, cells = assign_cells(torch.tensor([[4.0, 2.5]]), nx=8, ny=8)
    assert cells.tolist() == [[4, 2], [3, 2], [4, 3]]


def test_build_targets_anchor_ratio_and_neighbour_cells():
    model = small_detector()
    loss = YoloLoss(model, imgsz=64)
    grids = [(64 // s, 64 // s) for s in (8, 16, 32)]
    # Centre at (0.3, 0.7) of a 64-px image; size 12x12 px. On the stride-8 grid (8x8): gx = 2.4, gy = 5.6,
    # so the left neighbour (x frac 0.4 < 0.5) and the lower one (y frac 0.6 > 0.5) predict it too.
    target = torch.tensor([[0, 4, 0.3, 0.7, 12 / 64, 12 / 64]])
    levels = build_targets(target, loss.anchors, grids, 4.0)
    p3 = levels[0]
    cells = {(int(x), int(y)) for x, y in zip(p3.gx, p3.gy, strict=True)}
    assert cells == {(2, 5), (1, 5), (2, 6)}
    # P3 anchors (px) 10x13, 16x30, 33x23: ratios to 12x12 are within 4 for all three.
    assert sorted(set(p3.anchor.tolist())) == [0, 1, 2]
    assert len(p3) == 9
    assert (p3.classes == 4).all()
    assert torch.allclose(p3.boxes[:, 2:], torch.tensor([1.5, 1.5]).expand_as(p3.boxes[:, 2:]))
    # Box centre relative to each predicting cell: (0.4, 0.6) in its own, (1.4, 0.6) left, (0.4, -0.4) below.
    offsets = {(round(float(x), 4), round(float(y), 4)) for x, y in p3.boxes[:, :2]}
    assert offsets == {(0.4, 0.6), (1.4, 0.6), (0.4, -0.4)}
    # P5 anchors (px) 116x90 ... 373x326 are more than 4x the box: nothing matches there.
    assert len(levels[2]) == 0


def random_batch(nc, seed, n=8, imgsz=128):
    """Raw predictions for the three yolov5n levels and ``n`` random targets over two images."""
    g = torch.Generator().manual_seed(seed)
    preds = [torch.randn(2, 3, imgsz // s, imgsz // s, nc + 5, generator=g) for s in (8, 16, 32)]
    t = torch.zeros(n, 6)
    t[:, 0] = torch.randint(0, 2, (n,), generator=g).float()
    t[:, 1] = torch.randint(0, nc, (n,), generator=g).float()
    t[:, 2:4] = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    t[:, 4:6] = torch.rand(n, 2, generator=g) * 0.55 + 0.05
    return preds, t


# Values from the loss this module replaced (the YOLOv5 port, latlab commit 0bd1d69), computed on these very
# batches before the rewrite. The batches were chosen so that no two targets share a prediction slot: there
# the old loss kept whichever write came last, the new one keeps the largest IoU (see the next test).
PREVIOUS_LOSS_VALUES = {
    (10, 28): (0.9158103466033936, (0.1308630257844925, 0.1800047904253006, 0.14703737199306488)),
    (1, 21): (0.6088153123855591, (0.1294684261083603, 0.17493924498558044, 0.0)),
}


@pytest.mark.parametrize(("nc", "seed"), list(PREVIOUS_LOSS_VALUES))
def test_equals_the_previous_implementation_on_a_fixed_batch(nc, seed):
    preds, targets = random_batch(nc, seed)
    total, items = YoloLoss(build_model("yolov5n", nc=nc), imgsz=128)(preds, targets)
    expected_total, expected_items = PREVIOUS_LOSS_VALUES[nc, seed]
    assert total.item() == pytest.approx(expected_total, abs=1e-5)
    assert items.tolist() == pytest.approx(expected_items, abs=1e-5)


def test_objectness_target_is_the_clamped_iou_and_the_largest_on_a_shared_slot():
    pred = torch.zeros(2, 3, 4, 4, 6)
    index = torch.tensor
    # Slots (image, anchor, gy, gx): (1, 2, 3, 0) twice with IoU 0.3 then 0.7, (0, 0, 1, 1) once with IoU < 0.
    slots = LevelTargets(image=index([1, 0, 1]), anchor=index([2, 0, 2]), gy=index([3, 1, 3]), gx=index([0, 1, 0]),
                         classes=index([0, 0, 0]), boxes=torch.zeros(3, 4), anchor_wh=torch.ones(3, 2))
    for order in ([0, 1, 2], [2, 1, 0]):
        picked = LevelTargets(*(getattr(slots, f.name)[order] for f in fields(LevelTargets)))
        target = objectness_targets(pred, picked, torch.tensor([0.3, -0.2, 0.7])[order])
        assert target[1, 2, 3, 0].item() == pytest.approx(0.7)
        assert target[0, 0, 1, 1].item() == 0.0
        assert target.sum().item() == pytest.approx(0.7)


def test_loss_does_not_depend_on_the_order_of_targets_sharing_a_slot():
    crit = YoloLoss(build_model("yolov5n", nc=10), imgsz=64)
    preds, _ = random_batch(10, seed=3, imgsz=64)
    # Same centre (same cells) and both within 4x of P3 anchors 0 and 2: the two boxes share those slots
    # with different IoUs. Writing the last one's IoU (the previous loss) changed obj by 1e-6 here.
    a = [0, 1, 0.3, 0.7, 12 / 64, 12 / 64]
    b = [0, 2, 0.3, 0.7, 30 / 64, 6 / 64]
    forward = crit(preds, torch.tensor([a, b]))[1]
    backward = crit(preds, torch.tensor([b, a]))[1]
    assert torch.allclose(forward, backward, rtol=0, atol=1e-8)


@pytest.mark.slow
def test_overfits_eight_images(tmp_path):
    ds = load_dataset("builtin", imgsz=96, n_train=8, n_val=1, seed=2, root=tmp_path)
    ds.val = ds.train  # score on the training images themselves
    result = train(small_detector(), data=ds, epochs=200, imgsz=96, batch=8, optimizer="AdamW", lr0=0.01,
                   nbs=8, warmup_epochs=0, augment=False, val_every=200, out_dir=tmp_path / "run",
                   progress=False)
    assert result.map50 > 0.9
