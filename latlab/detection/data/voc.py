"""Pascal VOC data: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``, ``ImageSets/Main/<set>.txt``."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from latlab.detection.data.dataset import DetectionData, Split, bad_label
from latlab.errors import DataError

VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor")


def parse_voc_xml(path: Path, names: Sequence[str], *, include_difficult: bool = False,
                  skip_bad_labels: bool = True, skipped: list[str] | None = None) -> np.ndarray:
    """Parse one VOC annotation into float32 [M, 5] normalised YOLO rows, validating each object."""
    skipped = skipped if skipped is not None else []
    try:
        tree = ET.parse(path)
    except (OSError, ET.ParseError) as exc:
        raise DataError(f"{path}: cannot parse VOC XML ({exc})") from exc
    root = tree.getroot()
    size = root.find("size")
    try:
        w = float(size.findtext("width"))  # type: ignore[union-attr, arg-type]
        h = float(size.findtext("height"))  # type: ignore[union-attr, arg-type]
    except (AttributeError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: missing or invalid <size><width>/<height>") from exc
    index = {n: i for i, n in enumerate(names)}
    rows = []
    for k, obj in enumerate(root.iter("object"), 1):
        problem = None
        name = (obj.findtext("name") or "").strip()
        difficult = (obj.findtext("difficult") or "0").strip()
        if difficult not in ("0", "1"):
            raise DataError(f"{path}: object {k}: <difficult> must be 0 or 1, got {difficult[:40]!r}")
        if difficult == "1" and not include_difficult:
            continue
        box = obj.find("bndbox")
        if name not in index:
            problem = f"class {name!r} is not one of the {len(names)} names"
        elif box is None:
            problem = "missing <bndbox>"
        else:
            try:
                x1, y1, x2, y2 = (float(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                problem = "non-numeric <bndbox> coordinates"
            else:
                x1, y1 = x1 - 1, y1 - 1  # VOC pixel indices are 1-based
                if not (0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h):
                    problem = f"box ({x1 + 1}, {y1 + 1}, {x2}, {y2}) is outside the {w:g}x{h:g} image or empty"
                else:
                    rows.append([index[name], (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h])
        if problem is not None:
            bad_label(f"{path}: object {k}: {problem}", skip_bad_labels, skipped)
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def is_voc_dir(path: Path) -> bool:
    return path.is_dir() and (path / "Annotations").is_dir()


def load_voc(root: Path | str, *, names: Sequence[str] = VOC_NAMES, train_sets: Sequence[str] = ("train",),
             val_sets: Sequence[str] = ("val",), include_difficult: bool = False,
             skip_bad_labels: bool = True) -> DetectionData:
    """Load a Pascal VOC folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<set>.txt``)."""
    root = Path(root)
    if not is_voc_dir(root):
        raise DataError(f"{root}: not a VOC folder (no Annotations/)")
    splits = {}
    for split, sets in (("train", train_sets), ("val", val_sets)):
        ids: list[str] = []
        for s in sets:
            lst = root / "ImageSets" / "Main" / f"{s}.txt"
            if not lst.is_file():
                raise DataError(f"{lst}: image set list not found")
            ids += [ln.split()[0] for ln in lst.read_text().splitlines() if ln.strip()]
        skipped: list[str] = []
        labels, files = [], []
        for i in ids:
            xml = root / "Annotations" / f"{i}.xml"
            if not xml.is_file():
                raise DataError(f"{xml}: annotation listed in image set {sets} not found")
            labels.append(parse_voc_xml(xml, names, include_difficult=include_difficult,
                                        skip_bad_labels=skip_bad_labels, skipped=skipped))
            files.append(root / "JPEGImages" / f"{i}.jpg")
        splits[split] = Split(labels=labels, files=files, skipped_labels=skipped)
    return DetectionData(name=root.name, names=list(names), train=splits["train"], val=splits["val"], root=root)
