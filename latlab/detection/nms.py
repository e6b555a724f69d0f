"""Non-maximum suppression in plain torch (no torchvision): greedy, class-aware, batched.

``nms`` is the exact greedy algorithm (highest score first, drop every later box whose IoU with a kept box
exceeds the threshold). ``batched_nms`` makes it class-aware with the usual offset trick: boxes of
different classes are shifted apart so they can never overlap. ``non_max_suppression`` post-processes a
decoded Detect output ([bs, N, nc + 5], xywh pixels) into per-image ``[n, 6]`` ``x1 y1 x2 y2 score cls``.
"""

from __future__ import annotations

import numpy as np
import torch


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of xyxy boxes: [N, 4] x [M, 4] → [N, M]."""
    area_a = (a[:, 2] - a[:, 0]).clamp(0) * (a[:, 3] - a[:, 1]).clamp(0)
    area_b = (b[:, 2] - b[:, 0]).clamp(0) * (b[:, 3] - b[:, 1]).clamp(0)
    lt = torch.maximum(a[:, None, :2], b[None, :, :2])
    rb = torch.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = (rb - lt).clamp(0).prod(2)
    union = area_a[:, None] + area_b[None, :] - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(inter))


def xywh2xyxy(x: torch.Tensor) -> torch.Tensor:
    """Centre/size boxes to corner boxes."""
    y = x.clone()
    y[..., 0], y[..., 1] = x[..., 0] - x[..., 2] / 2, x[..., 1] - x[..., 3] / 2
    y[..., 2], y[..., 3] = x[..., 0] + x[..., 2] / 2, x[..., 1] + x[..., 3] / 2
    return y


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Greedy NMS; returns indices of kept boxes in decreasing score order (ties keep input order)."""
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    order = torch.sort(scores, descending=True, stable=True).indices
    over = (box_iou(boxes[order], boxes[order]) > iou_thres).cpu().numpy()
    removed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if removed[i]:
            continue
        keep.append(i)
        removed |= over[i]  # only later entries matter: earlier ones were already decided
    return order[torch.tensor(keep, dtype=torch.long)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor, iou_thres: float
                ) -> torch.Tensor:
    """Class-aware NMS: boxes only suppress boxes of the same class.

    Runs :func:`nms` per class (cheaper than one big IoU matrix) and returns the kept indices sorted by
    decreasing score.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    kept = []
    for c in torch.unique(classes):
        idx = (classes == c).nonzero().view(-1)
        kept.append(idx[nms(boxes[idx], scores[idx], iou_thres)])
    keep = torch.cat(kept)
    return keep[torch.sort(scores[keep], descending=True, stable=True).indices]


def non_max_suppression(pred: torch.Tensor, conf_thres: float = 0.001, iou_thres: float = 0.6,
                        max_det: int = 300, max_nms: int = 3000, multi_label: bool = True
                        ) -> list[torch.Tensor]:
    """Per image: filter by confidence (obj × cls), class-aware NMS, keep ``max_det`` best.

    ``pred`` is the eval-mode Detect output [bs, N, nc + 5] (xywh pixels, sigmoid scores). Returns a list
    of [n, 6] tensors ``x1, y1, x2, y2, score, cls``. ``multi_label`` lets one box carry several classes
    above ``conf_thres`` (as YOLOv5's validation does).
    """
    if not 0 <= conf_thres <= 1 or not 0 <= iou_thres <= 1:
        raise ValueError(f"conf_thres and iou_thres must be in [0, 1], got {conf_thres}, {iou_thres}")
    out = []
    for x in pred:
        x = x[x[:, 4] > conf_thres]
        if not len(x):
            out.append(torch.zeros((0, 6), device=pred.device))
            continue
        scores = x[:, 5:] * x[:, 4:5]
        box = xywh2xyxy(x[:, :4])
        if multi_label:
            i, j = (scores > conf_thres).nonzero(as_tuple=False).T
            det = torch.cat((box[i], scores[i, j, None], j[:, None].float()), 1)
        else:
            conf, j = scores.max(1, keepdim=True)
            det = torch.cat((box, conf, j.float()), 1)[conf.view(-1) > conf_thres]
        if len(det) > max_nms:
            det = det[det[:, 4].argsort(descending=True)[:max_nms]]
        keep = batched_nms(det[:, :4], det[:, 4], det[:, 5], iou_thres)[:max_det]
        out.append(det[keep])
    return out
