"""YOLOv5 loss: CIoU hand values, target assignment rules, loss decrease, and overfitting a tiny set."""

import math

import pytest
import torch

from latlab.detection.data import load_dataset
from latlab.detection.loss import LossHyp, YoloLoss, bbox_ciou
from latlab.detection.train import train
from latlab.ops.builder import build_model


def small_detector(nc=10):
    torch.manual_seed(0)
    return build_model("yolov5n", nc=nc)


def test_ciou_hand_values():
    a = torch.tensor([[1.0, 1.0, 2.0, 2.0]])
    assert bbox_ciou(a, a).item() == pytest.approx(1.0, abs=1e-6)
    # Same size, shifted by 1: IoU 2/6, enclosing box 3x2 → diagonal² 13, centre distance² 1, no aspect term.
    b = torch.tensor([[2.0, 1.0, 2.0, 2.0]])
    assert bbox_ciou(a, b).item() == pytest.approx(1 / 3 - 1 / 13, abs=1e-6)
    # Same centre, 2x2 inside 4x1: IoU 2/(4+4-2), diag² 16+4, aspect term v = 4/π²·(atan 4 − atan 1)², α = v/(v−IoU+1).
    c = torch.tensor([[1.0, 1.0, 4.0, 1.0]])
    iou = 2 / 6
    v = 4 / math.pi**2 * (math.atan(4) - math.atan(1)) ** 2
    assert bbox_ciou(a, c).item() == pytest.approx(iou - v * v / (v - iou + 1), abs=1e-6)


def test_hyp_scaling_follows_yolov5():
    h = LossHyp().scaled(nc=10, nl=3, imgsz=160)
    assert h.box == pytest.approx(0.05)
    assert h.cls == pytest.approx(0.5 * 10 / 80)
    assert h.obj == pytest.approx((160 / 640) ** 2)


def test_build_targets_anchor_ratio_and_neighbour_cells():
    model = small_detector()
    loss = YoloLoss(model, imgsz=64)
    preds = [torch.zeros(1, 3, 64 // s, 64 // s, 15) for s in (8, 16, 32)]
    # Centre at (0.3, 0.7) of a 64-px image; size 12x12 px. On the stride-8 grid (8x8): gx = 2.4, gy = 5.6,
    # so YOLOv5 also assigns the left neighbour (x frac 0.4 < 0.5) and the lower one (y frac 0.6 > 0.5).
    target = torch.tensor([[0, 4, 0.3, 0.7, 12 / 64, 12 / 64]])
    tcls, tbox, indices, _ = loss.build_targets(preds, target)
    _, a, gj, gi = indices[0]
    cells = {(int(x), int(y)) for x, y in zip(gi, gj, strict=True)}
    assert cells == {(2, 5), (1, 5), (2, 6)}
    # P3 anchors (px) 10x13, 16x30, 33x23: ratios to 12x12 are within 4 for all three.
    assert sorted(set(a.tolist())) == [0, 1, 2]
    assert (tcls[0] == 4).all()
    assert torch.allclose(tbox[0][:, 2:], torch.tensor([1.5, 1.5]).expand_as(tbox[0][:, 2:]))
    # P5 anchors (px) 116x90 ... 373x326 are more than 4x the box: nothing matches there.
    assert indices[2][0].numel() == 0


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    ds = load_dataset("builtin", imgsz=64, n_train=4, n_val=1, seed=1, root=tmp_path)
    model = small_detector()
    model.train()
    from latlab.detection.data import LetterboxDataset, collate

    imgs, targets = collate([LetterboxDataset(ds.train, 64)[i] for i in range(4)])
    imgs = imgs.float() / 255
    crit = YoloLoss(model, imgsz=64)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for _ in range(60):
        loss, items = crit(model(imgs), targets)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert items.shape == (3,)
    assert loss.item() < 0.5 * first


@pytest.mark.slow
def test_overfits_eight_images(tmp_path):
    ds = load_dataset("builtin", imgsz=96, n_train=8, n_val=1, seed=2, root=tmp_path)
    ds.val = ds.train  # score on the training images themselves
    result = train(small_detector(), data=ds, epochs=200, imgsz=96, batch=8, optimizer="AdamW", lr0=0.01,
                   nbs=8, warmup_epochs=0, augment=False, val_every=200, out_dir=tmp_path / "run",
                   progress=False)
    assert result.map50 > 0.9
