"""YOLOv5's detection loss: CIoU box loss, objectness BCE (IoU targets) and class BCE.

A port of ``utils/loss.py::ComputeLoss`` (YOLOv5 v6/v7) written against latlab's Detect contract:
``detect.anchors`` is [nl, na, 2] in grid units, predictions are raw ``[bs, na, ny, nx, nc + 5]`` logits.
Targets are matched to an anchor when the width and height ratios are within ``anchor_t`` (4.0), and each
target is also assigned to the two neighbouring cells closest to its centre (offset 0.5), which is what
lets the ``2·sigmoid − 0.5`` xy parameterisation reach ±0.5 cell beyond its own cell.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass
class LossHyp:
    """YOLOv5 ``hyp.scratch-low.yaml`` loss gains (before :meth:`scaled`)."""

    box: float = 0.05
    cls: float = 0.5
    obj: float = 1.0
    cls_pw: float = 1.0
    obj_pw: float = 1.0
    anchor_t: float = 4.0
    label_smoothing: float = 0.0

    def scaled(self, nc: int, nl: int, imgsz: int) -> LossHyp:
        """Scale gains for class count, number of levels and image size exactly as YOLOv5's ``train.py``."""
        d = asdict(self)
        d["box"] = self.box * 3 / nl
        d["cls"] = self.cls * nc / 80 * 3 / nl
        d["obj"] = self.obj * (imgsz / 640) ** 2 * 3 / nl
        return LossHyp(**d)


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU (Zheng et al. 2020) of matching rows of two ``[N, 4]`` xywh tensors → [N]."""
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    b1_x1, b1_x2, b1_y1, b1_y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2_x1, b2_x2, b2_y1, b2_y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    inter = (torch.minimum(b1_x2, b2_x2) - torch.maximum(b1_x1, b2_x1)).clamp(0) * \
            (torch.minimum(b1_y2, b2_y2) - torch.maximum(b1_y1, b2_y1)).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(b1_x2, b2_x2) - torch.minimum(b1_x1, b2_x1)
    ch = torch.maximum(b1_y2, b2_y2) - torch.minimum(b1_y1, b2_y1)
    c2 = cw**2 + ch**2 + eps  # enclosing box diagonal squared
    rho2 = (x2 - x1) ** 2 + (y2 - y1) ** 2  # centre distance squared
    v = (4 / math.pi**2) * (torch.atan(w2 / (h2 + eps)) - torch.atan(w1 / (h1 + eps))).pow(2)
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


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
    """Callable ``loss(preds, targets) -> (total * bs, [box, obj, cls] detached)``.

    ``targets`` is [K, 6] rows ``image_index, cls, cx, cy, w, h`` normalised to the input image.
    """

    def __init__(self, model: nn.Module, hyp: LossHyp | None = None, *, imgsz: int = 640,
                 autoscale: bool = True):
        det = find_detect(model)
        self.nc, self.nl, self.na = int(det.nc), int(det.nl), int(det.na)
        self.anchors = det.anchors.detach().clone().float()
        hyp = hyp or LossHyp()
        self.hyp = hyp.scaled(self.nc, self.nl, imgsz) if autoscale else hyp
        self.balance = {3: [4.0, 1.0, 0.4]}.get(self.nl, [4.0, 1.0, 0.25, 0.06, 0.02])
        dev = self.anchors.device  # the model's device: the loss runs where the predictions are
        self.bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([self.hyp.cls_pw], device=dev))
        self.bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([self.hyp.obj_pw], device=dev))
        eps = self.hyp.label_smoothing
        self.cp, self.cn = 1.0 - 0.5 * eps, 0.5 * eps
        self.gr = 1.0  # objectness target = IoU

    def __call__(self, preds: list[torch.Tensor], targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dev = preds[0].device
        lcls, lbox, lobj = (torch.zeros(1, device=dev) for _ in range(3))
        tcls, tbox, indices, anch = self.build_targets(preds, targets.to(dev))
        for i, pi in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=dev)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anch[i]
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox[i])
                lbox = lbox + (1.0 - iou).mean()
                iou = iou.detach().clamp(0).type(tobj.dtype)
                tobj[b, a, gj, gi] = (1.0 - self.gr) + self.gr * iou
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cn)
                    t[range(n), tcls[i]] = self.cp
                    lcls = lcls + self.bce_cls(pcls, t)
            lobj = lobj + self.bce_obj(pi[..., 4], tobj) * self.balance[i]
        lbox, lobj, lcls = lbox * self.hyp.box, lobj * self.hyp.obj, lcls * self.hyp.cls
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(self, preds: list[torch.Tensor], targets: torch.Tensor):
        """Assign targets to (image, anchor, cell) per level; returns classes, boxes, indices, anchors."""
        na, nt = self.na, targets.shape[0]
        dev = targets.device
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=dev)
        ai = torch.arange(na, device=dev).float().view(na, 1).repeat(1, nt)
        targets = torch.cat((targets.repeat(na, 1, 1), ai[..., None]), 2)  # [na, nt, 7]: img cls xywh anchor
        g = 0.5
        off = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=dev).float() * g
        for i in range(self.nl):
            anchors, shape = self.anchors[i].to(dev), preds[i].shape
            gain[2:6] = torch.tensor(shape, device=dev)[[3, 2, 3, 2]].float()
            t = targets * gain  # to grid units
            if nt:
                r = t[..., 4:6] / anchors[:, None]
                j = torch.max(r, 1 / r).max(2)[0] < self.hyp.anchor_t
                t = t[j]
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                j, k = ((gxy % 1 < g) & (gxy > 1)).T
                lft, m = ((gxi % 1 < g) & (gxi > 1)).T
                j = torch.stack((torch.ones_like(j), j, k, lft, m))
                t = t.repeat((5, 1, 1))[j]
                offsets = (torch.zeros_like(gxy)[None] + off[:, None])[j]
            else:
                t = targets[0]
                offsets = torch.zeros((0, 2), device=dev)
            bc, gxy, gwh, a = t.split((2, 2, 2, 1), 1)
            a, (b, c) = a.long().view(-1), bc.long().T
            gij = (gxy - offsets).long()
            gi, gj = gij.T
            gj, gi = gj.clamp(0, shape[2] - 1), gi.clamp(0, shape[3] - 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
