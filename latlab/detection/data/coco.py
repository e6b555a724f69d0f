"""COCO-style data: ``annotations/instances_<split>.json`` and each split's images in a folder.

A COCO folder holds ``annotations/instances_train*.json`` and ``annotations/instances_val*.json`` (one of
each, e.g. ``instances_train2017.json``); the images of ``instances_train2017.json`` are found in
``train2017/`` or ``images/train2017/`` (``file_name`` relative to that folder). Category ids may be any
integers: they map to contiguous class indices in sorted id order, named by the categories' ``name``.
Boxes are ``[x, y, w, h]`` in pixels of the image's ``width``/``height``; they are clipped to the image
(COCO boxes often overhang by a fraction of a pixel). ``iscrowd=1`` annotations are left out, as in
YOLOv5/ultralytics training. Images without annotations are kept as background images.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from latlab.detection.data.dataset import DetectionData, Split, bad_label
from latlab.errors import DataError

ANNOTATIONS = "annotations"


def is_coco_dir(path: Path) -> bool:
    return path.is_dir() and any((path / ANNOTATIONS).glob("instances_*.json"))


def annotation_file(root: Path, split: str) -> Path:
    """The one ``annotations/instances_<split>*.json`` of ``root``."""
    found = sorted((root / ANNOTATIONS).glob(f"instances_{split}*.json"))
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise DataError(f"{root / ANNOTATIONS}: expected one instances_{split}*.json, found {listed}")
    return found[0]


def read_coco_json(path: Path) -> dict[str, Any]:
    """A COCO instances file with its ``images``, ``annotations`` and ``categories`` lists."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read COCO JSON ({exc})") from exc
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a JSON object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(doc.get(key), list):
            raise DataError(f"{path}: missing list {key!r}")
    return doc


def coco_categories(doc: dict[str, Any], path: Path) -> dict[int, str]:
    """Category id → name, in sorted id order (the contiguous class index is the position)."""
    cats: dict[int, str] = {}
    for c in doc["categories"]:
        if not isinstance(c, dict) or not isinstance(c.get("id"), int) or "name" not in c:
            raise DataError(f"{path}: category {c!r} needs an integer 'id' and a 'name'")
        if c["id"] in cats:
            raise DataError(f"{path}: category id {c['id']} is listed twice")
        cats[c["id"]] = str(c["name"])
    if not cats:
        raise DataError(f"{path}: no categories")
    return dict(sorted(cats.items()))


def parse_coco(path: Path, doc: dict[str, Any], categories: dict[int, str], *, skip_bad_labels: bool = True,
               skipped: list[str] | None = None) -> tuple[list[str], list[np.ndarray]]:
    """Image ``file_name``s and float32 [M, 5] normalised YOLO rows per image of one instances file."""
    skipped = skipped if skipped is not None else []
    index = {cid: k for k, cid in enumerate(categories)}
    position, sizes, file_names = {}, [], []
    for img in doc["images"]:
        try:
            iid, name, w, h = img["id"], str(img["file_name"]), float(img["width"]), float(img["height"])
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{path}: image {img!r} needs id, file_name, width and height") from exc
        if not (w > 0 and h > 0):
            raise DataError(f"{path}: image {iid} ({name}) has size {w:g}x{h:g}")
        position[iid] = len(file_names)
        file_names.append(name)
        sizes.append((w, h))
    rows: list[list[list[float]]] = [[] for _ in file_names]
    for ann in doc["annotations"]:
        if ann.get("iscrowd", 0) == 1:
            continue
        where = f"{path}: annotation {ann.get('id', '?')}"
        k = position.get(ann.get("image_id"))
        if k is None:
            bad_label(f"{where}: image_id {ann.get('image_id')!r} is not in images", skip_bad_labels, skipped)
            continue
        where += f" (image {file_names[k]})"
        problem, row = _coco_row(ann, index, *sizes[k])
        if problem is None:
            rows[k].append(row)
        else:
            bad_label(f"{where}: {problem}", skip_bad_labels, skipped)
    return file_names, [np.array(r, dtype=np.float32).reshape(-1, 5) for r in rows]


def _coco_row(ann: dict[str, Any], index: dict[int, int], w: float, h: float) -> tuple[str | None, list[float]]:
    cid = ann.get("category_id")
    if cid not in index:
        return f"category_id {cid!r} is not one of the {len(index)} categories", []
    box = ann.get("bbox")
    try:
        x, y, bw, bh = (float(v) for v in box)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return f"bbox must be 4 numbers [x, y, w, h], got {box!r}", []
    if not all(math.isfinite(v) for v in (x, y, bw, bh)) or bw <= 0 or bh <= 0:
        return f"bbox [x, y, w, h] needs finite values and w, h > 0, got {box!r}", []
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, w), min(y + bh, h)
    if x2 <= x1 or y2 <= y1:
        return f"bbox {box!r} lies outside the {w:g}x{h:g} image", []
    return None, [index[cid], (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]


def images_dir(root: Path, ann_path: Path, file_names: list[str]) -> Path:
    """The folder of a split's images: ``<root>/<split>/``, ``<root>/images/<split>/`` or beside the JSON."""
    split = ann_path.stem.removeprefix("instances_")
    tried = [root / split, root / "images" / split, ann_path.parent]
    for d in tried:
        if d.is_dir() and (not file_names or (d / file_names[0]).is_file()):
            return d
    first = f" holding {file_names[0]}" if file_names else ""
    raise DataError(f"{ann_path}: no images folder{first} (tried {', '.join(str(t) for t in tried)})")


def load_coco(root: Path | str, *, train: str = "train", val: str = "val",
              skip_bad_labels: bool = True) -> DetectionData:
    """Load a COCO folder: ``annotations/instances_{train}*.json`` and ``instances_{val}*.json``.

    ``train``/``val`` pick the files when there are several (``train="train2017"``). Both files must list
    the same categories.
    """
    root = Path(root)
    splits, names, categories = {}, [], None
    for split, which in (("train", train), ("val", val)):
        path = annotation_file(root, which)
        doc = read_coco_json(path)
        cats = coco_categories(doc, path)
        if categories is not None and cats != categories:
            raise DataError(f"{path}: categories differ from the train file's ({len(cats)} vs {len(categories)})")
        categories, names = cats, list(cats.values())
        skipped: list[str] = []
        file_names, labels = parse_coco(path, doc, cats, skip_bad_labels=skip_bad_labels, skipped=skipped)
        folder = images_dir(root, path, file_names)
        splits[split] = Split(labels=labels, files=[folder / f for f in file_names], skipped_labels=skipped)
    return DetectionData(name=root.name, names=names, train=splits["train"], val=splits["val"], root=root)
