"""YOLO-format data: an ultralytics-style data YAML and one ``.txt`` label file per image.

The YAML has ``path`` (dataset root; relative to the YAML's folder, else to the working directory),
``train`` and ``val`` (each a folder of images, a ``.txt`` list of image paths, one image, or a list of
those, relative to ``path``), ``names`` (a list, or a ``{id: name}`` mapping with ids 0..nc-1) and an
optional ``nc`` that must agree. Labels are found by the ultralytics rule: the last ``images`` folder in an
image's path becomes ``labels`` and the suffix ``.txt`` (``images/train/a.jpg`` → ``labels/train/a.txt``).
An image without a label file is a background image; a labels folder that does not exist, or a split
without a single label file, is an error naming the folder (training on zero boxes is never what was meant).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from latlab.detection.data.dataset import IMG_SUFFIXES, DetectionData, Split, bad_label
from latlab.errors import DataError
from latlab.yamlio import read_yaml

YAML_SUFFIXES = (".yaml", ".yml")


def parse_yolo_label_file(path: Path, nc: int, *, skip_bad_labels: bool = True,
                          skipped: list[str] | None = None) -> np.ndarray | None:
    """Parse one YOLO ``.txt`` label file into float32 [M, 5] (cls, cx, cy, w, h), validating each line.

    A bad line raises :class:`DataError` naming file and line, or with ``skip_bad_labels`` is skipped with a
    warning and recorded in ``skipped``. An unreadable file is one such record and returns ``None`` (the
    image's boxes are unknown, so its caller drops the image).
    """
    skipped = skipped if skipped is not None else []
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        bad_label(f"{path}: label file is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                  f"{exc.start})", skip_bad_labels, skipped)
        return None
    except OSError as exc:
        bad_label(f"{path}: cannot read label file ({exc})", skip_bad_labels, skipped)
        return None
    rows: list[list[float]] = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        problem = _check_yolo_line(line, nc)
        if problem is None:
            rows.append([float(v) for v in line.split()])
        else:
            bad_label(f"{path}:{lineno}: {problem}", skip_bad_labels, skipped)
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def _check_yolo_line(line: str, nc: int) -> str | None:
    parts = line.split()
    if len(parts) != 5:
        return f"expected 5 values 'cls cx cy w h', got {len(parts)}: {line.strip()!r}"
    try:
        vals = [float(v) for v in parts]
    except ValueError:
        return f"non-numeric value in {line.strip()!r}"
    cls = vals[0]
    if not cls.is_integer() or not 0 <= cls < nc:
        return f"class {parts[0]} out of range [0, {nc})"
    cx, cy, w, h = vals[1:]
    if not all(math.isfinite(v) and -1e-6 <= v <= 1 + 1e-6 for v in (cx, cy, w, h)):
        return f"coordinates must be normalised to [0, 1], got {' '.join(parts[1:])}"
    if w <= 0 or h <= 0:
        return f"box width and height must be > 0, got w={w} h={h}"
    if cx - w / 2 < -1e-3 or cx + w / 2 > 1 + 1e-3 or cy - h / 2 < -1e-3 or cy + h / 2 > 1 + 1e-3:
        return f"box extends outside the image: {' '.join(parts[1:])}"
    return None


def image_files(spec: str | Sequence[str], root: Path, source: Path) -> list[Path]:
    """The images of one split entry: folders (recursively), ``.txt`` lists and single images, in order."""
    entries = [spec] if isinstance(spec, str) else list(spec)
    files: list[Path] = []
    for entry in entries:
        p = Path(str(entry))
        p = p if p.is_absolute() else root / p
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMG_SUFFIXES)
        elif p.is_file() and p.suffix == ".txt":
            for line in p.read_text().splitlines():
                if line.strip():
                    q = Path(line.strip())
                    files.append(q if q.is_absolute() else (p.parent / q))
        elif p.is_file() and p.suffix.lower() in IMG_SUFFIXES:
            files.append(p)
        else:
            raise DataError(f"{source}: split path {entry!r} not found (resolved to {p})")
    if not files:
        raise DataError(f"{source}: no images found for split {spec!r}")
    return files


def label_path_for(image: Path) -> Path:
    """YOLO convention: ``.../images/x.jpg`` → ``.../labels/x.txt`` (the last ``images`` folder)."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def class_names(spec: dict[str, Any], source: Path) -> list[str]:
    """``names`` as a list (a ``{id: name}`` mapping must use ids 0..n-1), checked against ``nc``."""
    names = spec["names"]
    if not isinstance(names, list | dict):
        raise DataError(f"{source}: 'names' must be a list of class names (or an index → name mapping), "
                        f"got {names!r:.60}")
    if "nc" in spec and (not isinstance(spec["nc"], int) or isinstance(spec["nc"], bool)):
        raise DataError(f"{source}: 'nc' must be an integer, got {spec['nc']!r:.60}")
    if isinstance(names, dict):
        ids = sorted(names, key=lambda k: (not isinstance(k, int), k))
        if ids != list(range(len(names))):
            raise DataError(f"{source}: names mapping ids must be 0..{len(names) - 1}, got {list(names)}")
        names = [names[k] for k in ids]
    if not isinstance(names, list) or not names:
        raise DataError(f"{source}: names must be a non-empty list or an {{id: name}} mapping, got {names!r}")
    if "nc" in spec and spec["nc"] != len(names):
        raise DataError(f"{source}: nc={spec['nc']} but {len(names)} names are listed")
    return [str(n) for n in names]


def dataset_root(spec: dict[str, Any], yaml_path: Path) -> Path:
    """``path`` resolved against the YAML's folder, then the working directory (the first that exists)."""
    given = spec.get("path")
    if not given:
        return yaml_path.parent
    p = Path(str(given))
    tried = [p] if p.is_absolute() else [(yaml_path.parent / p).resolve(), (Path.cwd() / p).resolve()]
    for cand in tried:
        if cand.is_dir():
            return cand
    raise DataError(f"{yaml_path}: path {given!r} not found (tried {', '.join(str(t) for t in tried)})")


def load_yolo(yaml_path: Path | str, *, skip_bad_labels: bool = True) -> DetectionData:
    """Load a YOLO-format dataset from its ultralytics-style data YAML (see the module docstring)."""
    yaml_path = Path(yaml_path)
    spec = read_yaml(yaml_path, what="data YAML", error=DataError)
    if not isinstance(spec, dict):
        raise DataError(f"{yaml_path}: expected a mapping with train, val, names")
    for key in ("train", "val", "names"):
        if key not in spec:
            raise DataError(f"{yaml_path}: missing key {key!r}")
    for key in ("train", "val"):
        if not isinstance(spec[key], str | list) or (isinstance(spec[key], list)
                                                     and not all(isinstance(e, str) for e in spec[key])):
            raise DataError(f"{yaml_path}: '{key}' must be a folder, image-list file or list of them, "
                            f"got {spec[key]!r:.60}")
    names = class_names(spec, yaml_path)
    root = dataset_root(spec, yaml_path)
    splits = {split: _yolo_split(image_files(spec[split], root, yaml_path), len(names), split, yaml_path,
                                 skip_bad_labels) for split in ("train", "val")}
    return DetectionData(name=yaml_path.stem, names=names, train=splits["train"], val=splits["val"], root=root)


def _yolo_split(files: list[Path], nc: int, split: str, source: Path, skip_bad_labels: bool) -> Split:
    label_dirs = dict.fromkeys(label_path_for(f).parent for f in files)
    for d in label_dirs:
        if not d.is_dir():
            raise DataError(f"{source}: {split} labels folder {d} not found (YOLO labels of images/<x>.jpg "
                            f"go in labels/<x>.txt)")
    skipped: list[str] = []
    kept, labels = [], []
    n_label_files = 0
    for f in files:
        lp = label_path_for(f)
        if not lp.is_file():
            lab: np.ndarray | None = np.zeros((0, 5), np.float32)  # a background image
        else:
            n_label_files += 1
            lab = parse_yolo_label_file(lp, nc, skip_bad_labels=skip_bad_labels, skipped=skipped)
        if lab is not None:
            kept.append(f)
            labels.append(lab)
    if n_label_files == 0:
        raise DataError(f"{source}: no label files for the {split} split in {', '.join(map(str, label_dirs))}")
    return Split(labels=labels, files=kept, skipped_labels=skipped)
