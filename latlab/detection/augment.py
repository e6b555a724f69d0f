"""Training augmentation on whole batches in torch: random affine, left-right flip and HSV jitter.

Done per batch (``grid_sample`` on [B, 3, S, S]) instead of per image in numpy because there is no OpenCV
here and the batch op is cheap next to the training step. All randomness comes from one
``torch.Generator`` that the trainer seeds from ``(seed, epoch, batch)``, so a resumed run sees exactly
the same augmented batches as an uninterrupted one. Gains follow YOLOv5's ``hyp.scratch-low.yaml``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from latlab.detection.data import PAD_VALUE


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation gains (YOLOv5 defaults; mosaic is not implemented)."""

    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    fliplr: float = 0.5
    flipud: float = 0.0


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=g) * (hi - lo) + lo


def random_affine(imgs: torch.Tensor, targets: torch.Tensor, cfg: AugmentConfig, g: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate/scale/shear/translate each image; boxes follow (corners transformed, re-boxed, filtered).

    ``imgs`` float [B, 3, S, S] in [0, 1]; ``targets`` [K, 6] ``img, cls, cx, cy, w, h`` normalised.
    """
    b, _, h, w = imgs.shape
    a = _uniform(b, -cfg.degrees, cfg.degrees, g) * math.pi / 180
    s = _uniform(b, 1 - cfg.scale, 1 + cfg.scale, g)
    sh_x = torch.tan(_uniform(b, -cfg.shear, cfg.shear, g) * math.pi / 180)
    sh_y = torch.tan(_uniform(b, -cfg.shear, cfg.shear, g) * math.pi / 180)
    tx = _uniform(b, 0.5 - cfg.translate, 0.5 + cfg.translate, g) * w
    ty = _uniform(b, 0.5 - cfg.translate, 0.5 + cfg.translate, g) * h
    # Forward pixel transform M = T @ Shear @ (R * s) @ C (C moves the centre to the origin), as YOLOv5.
    eye = torch.eye(3).repeat(b, 1, 1)
    c = eye.clone()
    c[:, 0, 2], c[:, 1, 2] = -w / 2, -h / 2
    r = eye.clone()
    r[:, 0, 0], r[:, 0, 1] = torch.cos(a) * s, -torch.sin(a) * s
    r[:, 1, 0], r[:, 1, 1] = torch.sin(a) * s, torch.cos(a) * s
    shm = eye.clone()
    shm[:, 0, 1], shm[:, 1, 0] = sh_x, sh_y
    t = eye.clone()
    t[:, 0, 2], t[:, 1, 2] = tx, ty
    m = t @ shm @ r @ c
    # grid_sample wants, per output pixel, the input location: inverse map in normalised coords.
    norm = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], dtype=torch.float32)
    theta = (norm @ torch.linalg.inv(m) @ torch.linalg.inv(norm))[:, :2]
    grid = sampling_grid(theta, h, w)
    pad = PAD_VALUE / 255
    out = F.grid_sample(imgs - pad, grid, mode="bilinear", padding_mode="zeros", align_corners=False).add_(pad)
    if not len(targets):
        return out, targets
    idx = targets[:, 0].long()
    cx, cy, bw, bh = targets[:, 2] * w, targets[:, 3] * h, targets[:, 4] * w, targets[:, 5] * h
    xs = torch.stack([cx - bw / 2, cx + bw / 2, cx + bw / 2, cx - bw / 2], 1)
    ys = torch.stack([cy - bh / 2, cy - bh / 2, cy + bh / 2, cy + bh / 2], 1)
    mi = m[idx]
    nx = mi[:, 0, 0:1] * xs + mi[:, 0, 1:2] * ys + mi[:, 0, 2:3]
    ny = mi[:, 1, 0:1] * xs + mi[:, 1, 1:2] * ys + mi[:, 1, 2:3]
    x1, x2 = nx.min(1).values.clamp(0, w), nx.max(1).values.clamp(0, w)
    y1, y2 = ny.min(1).values.clamp(0, h), ny.max(1).values.clamp(0, h)
    keep = box_candidates(bw * s[idx], bh * s[idx], x2 - x1, y2 - y1)
    new = torch.stack([targets[:, 0], targets[:, 1], (x1 + x2) / 2 / w, (y1 + y2) / 2 / h,
                       (x2 - x1) / w, (y2 - y1) / h], 1)
    return out, new[keep]


def sampling_grid(theta: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``F.affine_grid(theta, (B, C, h, w), align_corners=False)`` from broadcast products.

    The same [B, h, w, 2] grid (to float rounding) at a fraction of the cost: torch builds it as a batched
    matrix product with an inner size of 3, which is slower on the CPU than the two sampling steps after it.
    """
    xs = (torch.arange(w, dtype=theta.dtype, device=theta.device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=theta.dtype, device=theta.device) * 2 + 1) / h - 1
    t = theta[:, None, None]  # [B, 1, 1, 2, 3]: output x, y from (x, y, 1)
    return t[..., 0] * xs[None, None, :, None] + t[..., 1] * ys[None, :, None, None] + t[..., 2]


def box_candidates(w1: torch.Tensor, h1: torch.Tensor, w2: torch.Tensor, h2: torch.Tensor, wh_thr: float = 2,
                   ar_thr: float = 100, area_thr: float = 0.1, eps: float = 1e-16) -> torch.Tensor:
    """YOLOv5's filter after a warp: keep boxes > ``wh_thr`` px, ≥ ``area_thr`` of their scaled area."""
    ar = torch.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (ar < ar_thr)


def flip(imgs: torch.Tensor, targets: torch.Tensor, p_lr: float, p_ud: float, g: torch.Generator
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Flip each image left-right with probability ``p_lr`` (and up-down with ``p_ud``)."""
    b = imgs.shape[0]
    imgs, targets = imgs.clone(), targets.clone()
    for p, dim, col in ((p_lr, 3, 2), (p_ud, 2, 3)):
        sel = torch.rand(b, generator=g) < p
        if p > 0 and sel.any():
            imgs[sel] = imgs[sel].flip(dim)
            rows = sel[targets[:, 0].long()] if len(targets) else torch.zeros(0, dtype=torch.bool)
            targets[rows, col] = 1 - targets[rows, col]
    return imgs, targets


def hue_rotation(angle: torch.Tensor) -> torch.Tensor:
    """[B, 3, 3] matrices rotating RGB about the grey axis by ``angle`` radians (a hue shift)."""
    c, s = torch.cos(angle), torch.sin(angle)
    k = 1 / 3
    r = math.sqrt(k)
    m = torch.empty(len(angle), 3, 3)
    m[:, 0, 0] = m[:, 1, 1] = m[:, 2, 2] = c + (1 - c) * k
    m[:, 0, 1] = m[:, 1, 2] = m[:, 2, 0] = k * (1 - c) - r * s
    m[:, 0, 2] = m[:, 1, 0] = m[:, 2, 1] = k * (1 - c) + r * s
    return m


def hsv_jitter(imgs: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """Random per-image hue shift and saturation/value gains, like YOLOv5's ``augment_hsv``.

    Computed directly in RGB to stay cheap: the hue shift is a rotation about the grey axis; saturation
    scales each pixel's distance from its max channel (``v``), which is exactly HSV's S gain while S stays
    ≤ 1; value multiplies all channels. Results are clipped to [0, 1].
    """
    b = imgs.shape[0]
    gains = (torch.rand(b, 3, generator=g) * 2 - 1) * torch.tensor([cfg.hsv_h, cfg.hsv_s, cfg.hsv_v]) + 1
    x = imgs
    if cfg.hsv_h:
        rot = hue_rotation((gains[:, 0] - 1) * 2 * math.pi)
        x = torch.einsum("bij,bjhw->bihw", rot, x).clamp_(0, 1)
    v = x.amax(1, keepdim=True)
    x = (x - v).mul_(gains[:, 1, None, None, None]).add_(v)  # in place on fresh tensors: fewer passes
    return x.mul_(gains[:, 2, None, None, None]).clamp_(0, 1)


def augment_batch(imgs: torch.Tensor, targets: torch.Tensor, cfg: AugmentConfig, g: torch.Generator
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Affine → HSV → flip on a float batch in [0, 1]; returns the new batch and targets."""
    if cfg.degrees or cfg.translate or cfg.scale or cfg.shear:
        imgs, targets = random_affine(imgs, targets, cfg, g)
    if cfg.hsv_h or cfg.hsv_s or cfg.hsv_v:
        imgs = hsv_jitter(imgs, cfg, g)
    if cfg.fliplr or cfg.flipud:
        imgs, targets = flip(imgs, targets, cfg.fliplr, cfg.flipud, g)
    return imgs, targets
