"""Detection loss for latlab's anchor-based Detect head: CIoU box loss, IoU-target objectness, class BCE.

Written for latlab from the published description of the YOLOv5 loss, not ported from its code. Sources:
the YOLOv5 documentation, "Architecture description", sections "Loss computation" and "Build targets"
(docs.ultralytics.com/yolov5/tutorials/architecture_description), and the CIoU paper, Zheng et al.,
"Distance-IoU Loss: Faster and Better Learning for Bounding Box Regression", AAAI 2020.

The contract is latlab's Detect head: ``detect.anchors`` is [nl, na, 2] in grid units, predictions are raw
``[bs, na, ny, nx, nc + 5]`` logits, targets are [K, 6] rows ``image, class, cx, cy, w, h`` normalised to
the input image. The steps, each a small function below:

1. :func:`match_anchors`: a target matches an anchor when neither its width nor its height differs from
   the anchor's by more than a factor ``anchor_t`` (4.0).
2. :func:`assign_cells`: a matched target is predicted from its own grid cell and from the neighbouring
   cell nearest its centre along x and along y (where that cell is inside the grid), because the decoded
   centre ``2·sigmoid − 0.5`` reaches half a cell beyond its own cell.
3. :func:`build_targets`: both steps on every level, giving one :class:`LevelTargets` per level.
4. :class:`YoloLoss`: CIoU box loss on the decoded boxes (:func:`decode_boxes`, :func:`ciou`), objectness
   BCE against the detached, clamped IoU on every cell (level weights :func:`objectness_balance`), class BCE
   on the assigned cells, each scaled by its gain (:class:`LossHyp`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

NEIGHBOUR_OFFSET = 0.5  # a centre closer than this to a cell edge also uses the cell across that edge


@dataclass
class LossHyp:
    """Loss gains and the anchor-matching threshold; defaults are YOLOv5's published ``scratch-low`` values."""

    box: float = 0.05
    cls: float = 0.5
    obj: float = 1.0
    cls_pw: float = 1.0
    obj_pw: float = 1.0
    anchor_t: float = 4.0
    label_smoothing: float = 0.0

    def scaled(self, nc: int, nl: int, imgsz: int) -> LossHyp:
        """Gains scaled to the class count (per 80), level count (per 3) and image area (per 640²)."""
        d = asdict(self)
        d["box"] = self.box * 3 / nl
        d["cls"] = self.cls * nc / 80 * 3 / nl
        d["obj"] = self.obj * (imgsz / 640) ** 2 * 3 / nl
        return LossHyp(**d)


@dataclass
class LevelTargets:
    """Targets assigned to one detection level; row ``k`` is a prediction slot and what it should predict.

    ``image, anchor, gy, gx`` index the level's ``[bs, na, ny, nx]`` slots; ``boxes`` is [n, 4] ``x, y, w, h``
    in grid units with x, y relative to the slot's cell corner; ``anchor_wh`` is [n, 2] (grid units).
    """

    image: torch.Tensor
    anchor: torch.Tensor
    gy: torch.Tensor
    gx: torch.Tensor
    classes: torch.Tensor
    boxes: torch.Tensor
    anchor_wh: torch.Tensor

    def __len__(self) -> int:
        return int(self.image.shape[0])


def ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching rows of two ``[N, 4]`` ``cx, cy, w, h`` tensors → [N] (Zheng et al. 2020).

    CIoU = IoU − ρ²/c² − α·v: ρ is the centre distance, c the diagonal of the smallest enclosing box,
    v = 4/π²·(atan(w₂/h₂) − atan(w₁/h₁))² the aspect-ratio term and α = v / ((1 − IoU) + v) its weight,
    held constant in the backward pass as the paper's trade-off parameter.
    """
    (cx1, cy1, w1, h1), (cx2, cy2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    left1, right1, top1, bottom1 = cx1 - w1 / 2, cx1 + w1 / 2, cy1 - h1 / 2, cy1 + h1 / 2
    left2, right2, top2, bottom2 = cx2 - w2 / 2, cx2 + w2 / 2, cy2 - h2 / 2, cy2 + h2 / 2
    overlap_w = (torch.minimum(right1, right2) - torch.maximum(left1, left2)).clamp(min=0)
    overlap_h = (torch.minimum(bottom1, bottom2) - torch.maximum(top1, top2)).clamp(min=0)
    intersection = overlap_w * overlap_h
    iou = intersection / (w1 * h1 + w2 * h2 - intersection + eps)
    enclosing_w = torch.maximum(right1, right2) - torch.minimum(left1, left2)
    enclosing_h = torch.maximum(bottom1, bottom2) - torch.minimum(top1, top2)
    diagonal2 = enclosing_w**2 + enclosing_h**2 + eps
    distance2 = (cx2 - cx1) ** 2 + (cy2 - cy1) ** 2
    v = 4 / math.pi**2 * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))) ** 2
    with torch.no_grad():
        alpha = v / ((1 + eps) - iou + v)
    return iou - distance2 / diagonal2 - alpha * v


def decode_boxes(raw: torch.Tensor, anchor_wh: torch.Tensor) -> torch.Tensor:
    """Raw ``[n, 4]`` box logits → ``x, y, w, h`` in grid units relative to the cell corner.

    Centre ``2·sigmoid − 0.5`` (−0.5 … 1.5 cells), size ``(2·sigmoid)²·anchor`` (0 … 4 anchors).
    """
    xy = raw[:, :2].sigmoid() * 2 - 0.5
    wh = (raw[:, 2:4].sigmoid() * 2) ** 2 * anchor_wh
    return torch.cat((xy, wh), 1)


def match_anchors(wh: torch.Tensor, anchors: torch.Tensor, anchor_t: float) -> torch.Tensor:
    """Which anchors each box matches: ``[na, nt]`` bool from box sizes ``[nt, 2]`` and anchors ``[na, 2]``.

    A box matches an anchor when ``max(r, 1/r) < anchor_t`` for both r = w/w_anchor and r = h/h_anchor.
    """
    ratio = wh[None] / anchors[:, None]
    return torch.maximum(ratio, 1 / ratio).amax(2) < anchor_t


def assign_cells(centres: torch.Tensor, nx: int, ny: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cells that predict each centre: ``(source row, cell [k, 2] as gx, gy)`` from centres ``[m, 2]``.

    Every centre gets its own cell (clamped into the grid), then the x neighbour on the side of the nearer
    cell edge (left when the fraction is below 0.5, else right), then the y neighbour likewise; a neighbour
    outside the grid is dropped. A centre exactly on a cell edge belongs to the cell after the edge and takes
    the cell before it as neighbour. Rows come own cells first, then x neighbours, then y neighbours.
    """
    size = torch.tensor([nx, ny], device=centres.device)
    own = centres.floor().long()
    step = torch.where(centres - own < NEIGHBOUR_OFFSET, -1, 1)
    neighbour = own + step
    inside = (neighbour >= 0) & (neighbour < size)
    rows = torch.arange(centres.shape[0], device=centres.device)
    own_cells = torch.minimum(own.clamp(min=0), size - 1)
    x_cells = torch.stack((neighbour[:, 0], own_cells[:, 1]), 1)[inside[:, 0]]
    y_cells = torch.stack((own_cells[:, 0], neighbour[:, 1]), 1)[inside[:, 1]]
    return (torch.cat((rows, rows[inside[:, 0]], rows[inside[:, 1]])),
            torch.cat((own_cells, x_cells, y_cells)))


def build_targets(targets: torch.Tensor, anchors: torch.Tensor, grids: list[tuple[int, int]],
                  anchor_t: float) -> list[LevelTargets]:
    """Assign ``[K, 6]`` normalised targets to prediction slots on every level.

    ``anchors`` is [nl, na, 2] in grid units, ``grids`` the ``(ny, nx)`` of each level. On each level a target
    lands on every anchor it matches (:func:`match_anchors`) at every cell :func:`assign_cells` gives it.
    """
    levels = []
    for level_anchors, (ny, nx) in zip(anchors, grids, strict=True):
        scale = torch.tensor([nx, ny, nx, ny], dtype=targets.dtype, device=targets.device)
        boxes = targets[:, 2:6] * scale
        anchor_idx, target_idx = match_anchors(boxes[:, 2:], level_anchors, anchor_t).nonzero(as_tuple=True)
        rows, cells = assign_cells(boxes[target_idx, :2], nx, ny)
        anchor_idx, target_idx = anchor_idx[rows], target_idx[rows]
        box = boxes[target_idx]
        levels.append(LevelTargets(
            image=targets[target_idx, 0].long(), anchor=anchor_idx, gy=cells[:, 1], gx=cells[:, 0],
            classes=targets[target_idx, 1].long(),
            boxes=torch.cat((box[:, :2] - cells.to(box.dtype), box[:, 2:]), 1),
            anchor_wh=level_anchors[anchor_idx]))
    return levels


def objectness_targets(pred: torch.Tensor, slots: LevelTargets, iou: torch.Tensor) -> torch.Tensor:
    """Objectness target for every slot of a ``[bs, na, ny, nx, no]`` level: the IoU of the box assigned
    there (detached, clamped at 0), 0 where none is; where several boxes share a slot, the largest IoU."""
    bs, na, ny, nx = pred.shape[:4]
    target = torch.zeros(bs * na * ny * nx, dtype=pred.dtype, device=pred.device)
    flat = ((slots.image * na + slots.anchor) * ny + slots.gy) * nx + slots.gx
    target.scatter_reduce_(0, flat, iou.detach().clamp(min=0).to(pred.dtype), "amax")
    return target.view(bs, na, ny, nx)


def objectness_balance(nl: int) -> tuple[float, ...]:
    """Objectness weight per level, finest first: (4.0, 1.0, 0.4) for P3–P5; five levels for P3–P7 models."""
    return (4.0, 1.0, 0.4) if nl == 3 else (4.0, 1.0, 0.25, 0.06, 0.02)[:nl]


def find_detect(model: nn.Module) -> nn.Module:
    """The model's Detect head: ``model.detect`` or the last module with the Detect attributes."""
    det = getattr(model, "detect", None)
    if det is not None:
        return det
    found = None
    for m in model.modules():
        if all(hasattr(m, a) for a in ("nc", "no", "nl", "na", "anchors", "stride")):
            found = m
    if found is None:
        raise TypeError(f"{type(model).__name__} has no Detect head (needs nc, no, nl, na, anchors, stride)")
    return found


class YoloLoss:
    """Callable ``loss(preds, targets) -> (total · batch size, [box, obj, cls] detached)``.

    ``targets`` is [K, 6] rows ``image_index, cls, cx, cy, w, h`` normalised to the input image. The
    objectness target of an assigned slot is its box's CIoU (detached, clamped at 0); where several targets
    share a slot, the largest wins. The class loss applies only when there is more than one class.
    """

    def __init__(self, model: nn.Module, hyp: LossHyp | None = None, *, imgsz: int = 640,
                 autoscale: bool = True):
        det = find_detect(model)
        self.nc, self.nl, self.na = int(det.nc), int(det.nl), int(det.na)
        self.anchors = det.anchors.detach().clone().float()
        hyp = hyp or LossHyp()
        self.hyp = hyp.scaled(self.nc, self.nl, imgsz) if autoscale else hyp
        self.balance = objectness_balance(self.nl)
        if len(self.balance) < self.nl:
            raise ValueError(f"the loss weights at most {len(self.balance)} detection levels; the model has {self.nl}")

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        device = preds[0].device
        assigned = build_targets(targets.to(device), self.anchors.to(device),
                                 [(p.shape[2], p.shape[3]) for p in preds], self.hyp.anchor_t)
        box_loss, obj_loss, cls_loss = (torch.zeros(1, device=device) for _ in range(3))
        for pred, slots, weight in zip(preds, assigned, self.balance, strict=True):
            picked = pred[slots.image, slots.anchor, slots.gy, slots.gx]
            iou = ciou(decode_boxes(picked[:, :4], slots.anchor_wh), slots.boxes)
            if len(slots):
                box_loss = box_loss + (1.0 - iou).mean()
                if self.nc > 1:
                    cls_target = self._class_targets(slots.classes).to(picked.dtype)
                    cls_loss = cls_loss + self._bce(picked[:, 5:], cls_target, self.hyp.cls_pw)
            obj_target = objectness_targets(pred, slots, iou)
            obj_loss = obj_loss + self._bce(pred[..., 4], obj_target, self.hyp.obj_pw) * weight
        box_loss, obj_loss, cls_loss = box_loss * self.hyp.box, obj_loss * self.hyp.obj, cls_loss * self.hyp.cls
        return (box_loss + obj_loss + cls_loss) * preds[0].shape[0], torch.cat((box_loss, obj_loss, cls_loss)).detach()

    def _class_targets(self, classes: torch.Tensor) -> torch.Tensor:
        """One-hot class targets, smoothed: 1 − ε/2 for the class, ε/2 for the others."""
        eps = self.hyp.label_smoothing
        return F.one_hot(classes, self.nc).float() * (1.0 - eps) + 0.5 * eps

    @staticmethod
    def _bce(logits: torch.Tensor, target: torch.Tensor, pos_weight: float) -> torch.Tensor:
        """Mean binary cross-entropy on logits with a positive-class weight."""
        weight = torch.tensor([pos_weight], dtype=logits.dtype, device=logits.device)
        return F.binary_cross_entropy_with_logits(logits, target, pos_weight=weight)
