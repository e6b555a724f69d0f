"""mAP with pycocotools as the reference implementation, from in-memory tensors.

``mean_average_precision`` converts per-image predictions and targets to COCO dictionaries in memory and
runs ``COCOeval`` (bbox): 101-point interpolated AP at IoU 0.50 (``map50``) and averaged over IoU
0.50:0.05:0.95 (``map``), plus a per-class table. pycocotools' console output is swallowed.

Conventions: category ids are ``cls + 1`` and image ids ``index + 1`` inside COCO; boxes are converted to
COCO's ``[x, y, w, h]``. AP is averaged over the classes that have at least one target (COCO's rule);
with no targets at all the metrics are ``nan``.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from latlab.errors import DataError

PER_CLASS_COLUMNS = ["cls", "name", "n_targets", "n_preds", "ap50", "ap"]


def _as_array(x: torch.Tensor | np.ndarray, cols: int, what: str, i: int) -> np.ndarray:
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    arr = arr.astype(np.float64).reshape(-1, cols) if arr.size == 0 else arr.astype(np.float64)
    if arr.ndim != 2 or arr.shape[1] != cols:
        raise DataError(f"{what}[{i}]: expected shape [N, {cols}], got {tuple(arr.shape)}")
    return arr


def mean_average_precision(preds: Sequence[torch.Tensor | np.ndarray], targets: Sequence[torch.Tensor | np.ndarray],
                           *, names: Sequence[str] | None = None, nc: int | None = None,
                           max_dets: int = 100) -> dict:
    """COCO mAP of detections against ground truth, one list entry per image.

    ``preds[i]``: [N, 6] ``x1, y1, x2, y2, score, cls``; ``targets[i]``: [M, 5] ``cls, x1, y1, x2, y2``
    (pixels). Returns ``{"map50", "map", "map75", "per_class", "n_images", "n_targets", "n_preds"}`` where
    ``per_class`` is a DataFrame with columns ``cls, name, n_targets, n_preds, ap50, ap`` (``nan`` for a
    class without targets).
    """
    if len(preds) != len(targets):
        raise DataError(f"preds has {len(preds)} images but targets has {len(targets)}")
    P = [_as_array(p, 6, "preds", i) for i, p in enumerate(preds)]
    T = [_as_array(t, 5, "targets", i) for i, t in enumerate(targets)]
    seen = [int(c) for arr in T for c in arr[:, 0]] + [int(c) for arr in P for c in arr[:, 5]]
    if nc is None:
        nc = len(names) if names is not None else (max(seen) + 1 if seen else 0)
    names = list(names) if names is not None else [str(c) for c in range(nc)]
    if seen and max(seen) >= nc:
        raise DataError(f"class id {max(seen)} out of range for nc={nc}")

    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(P, T, strict=True)):
        images.append({"id": i + 1})
        for c, x1, y1, x2, y2 in t:
            w, h = x2 - x1, y2 - y1
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1,
                         "bbox": [x1, y1, w, h], "area": w * h, "iscrowd": 0})
        for x1, y1, x2, y2, s, c in p:
            dets.append({"image_id": i + 1, "category_id": int(c) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                         "score": float(s)})
    n_t = np.bincount([int(a["category_id"]) - 1 for a in anns], minlength=nc)[:nc] if anns else np.zeros(nc, int)
    n_p = np.bincount([int(d["category_id"]) - 1 for d in dets], minlength=nc)[:nc] if dets else np.zeros(nc, int)
    per_class = pd.DataFrame({"cls": np.arange(nc), "name": names, "n_targets": n_t, "n_preds": n_p,
                              "ap50": np.nan, "ap": np.nan})
    result = {"map50": float("nan"), "map": float("nan"), "map75": float("nan"), "per_class": per_class,
              "n_images": len(images), "n_targets": len(anns), "n_preds": len(dets)}
    if not anns:
        return result
    has_gt = n_t > 0
    if not dets:  # pycocotools cannot load an empty result list; every class with targets scores 0
        per_class.loc[has_gt, ["ap50", "ap"]] = 0.0
        result.update(map50=0.0, map=0.0, map75=0.0)
        return result

    gt_dict = {"images": images, "annotations": anns,
               "categories": [{"id": c + 1, "name": names[c]} for c in range(nc)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]; K follows sorted catIds = all classes
    cat_ids = ev.params.catIds
    for k, cat in enumerate(cat_ids):
        c = cat - 1
        if not has_gt[c]:
            continue
        p_all = precision[:, :, k, 0, -1]
        p50 = precision[0, :, k, 0, -1]
        per_class.loc[c, "ap"] = float(p_all[p_all > -1].mean()) if (p_all > -1).any() else 0.0
        per_class.loc[c, "ap50"] = float(p50[p50 > -1].mean()) if (p50 > -1).any() else 0.0
    result.update(map=float(ev.stats[0]), map50=float(ev.stats[1]), map75=float(ev.stats[2]))
    return result
