"""Detection datasets: the built-in shapes set (cached) and loaders for YOLO-format and Pascal VOC data.

Everything ends up as a :class:`DetectionData` (names + a train and a val :class:`Split`). A split knows
how to load image ``i`` as uint8 RGB HWC and holds its labels as ``[M, 5]`` arrays ``cls, cx, cy, w, h``
normalised to the image (YOLO convention). :class:`LetterboxDataset` turns a split into fixed-size tensors
for training/evaluation.

Label validation is strict: a class out of range, a coordinate outside [0, 1], a non-positive size or a
malformed line raises :class:`~latlab.errors.DataError` naming the file and line. With
``skip_bad_labels=True`` the bad line is skipped with a warning and counted in ``Split.skipped`` instead;
nothing is dropped silently.
"""

from __future__ import annotations

import json
import math
import os
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from latlab.detection import synthetic
from latlab.errors import DataError
from latlab.yamlio import read_yaml

IMG_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
             "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
             "tvmonitor")
BUILTIN = "builtin"
DATA_ROOT = Path("results") / "data"
PAD_VALUE = 114


@dataclass
class Split:
    """One split: an image source (in-memory array or files) and normalised YOLO labels per image."""

    labels: list[np.ndarray]
    images: np.ndarray | None = None  # uint8 [N, H, W, 3] for in-memory data
    files: list[Path] | None = None
    skipped: list[str] = field(default_factory=list)  # "file:line: reason" for every skipped label

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 RGB [H, W, 3]."""
        if self.images is not None:
            return np.array(self.images[i])  # copy: the cache is a read-only memmap
        assert self.files is not None
        return read_image(self.files[i])

    @property
    def n_boxes(self) -> int:
        return int(sum(len(lb) for lb in self.labels))


@dataclass
class DetectionData:
    """A detection dataset: class names and train/val splits."""

    name: str
    names: list[str]
    train: Split
    val: Split
    root: Path | None = None

    @property
    def nc(self) -> int:
        return len(self.names)

    def split(self, which: str) -> Split:
        if which not in ("train", "val"):
            raise DataError(f"split must be 'train' or 'val', got {which!r}")
        return self.train if which == "train" else self.val

    def summary(self) -> dict:
        return {"name": self.name, "nc": self.nc, "train_images": len(self.train),
                "train_boxes": self.train.n_boxes, "val_images": len(self.val), "val_boxes": self.val.n_boxes,
                "skipped_labels": len(self.train.skipped) + len(self.val.skipped)}


def read_image(path: Path | str) -> np.ndarray:
    """Decode an image file to uint8 RGB [H, W, 3] with Pillow."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({exc.args[0] if exc.args else exc}); "
                        f"Pillow's limit is {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from exc


# ---------------------------------------------------------------------------------------------------------
# Built-in synthetic data


def builtin_dir(imgsz: int = 160, n_train: int = 2000, n_val: int = 400, seed: int = 0,
                root: Path | str | None = None) -> Path:
    """Cache folder of one built-in dataset variant."""
    base = Path(root) if root is not None else DATA_ROOT
    return base / f"shapes10-{imgsz}px-n{n_train}-{n_val}-s{seed}-v{synthetic.GENERATOR_VERSION}"


def make_dataset(*, imgsz: int = 160, n_train: int = 2000, n_val: int = 400, seed: int = 0,
                 root: Path | str | None = None, force: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate (or reuse) the built-in shapes dataset under ``results/data/`` and return its folder.

    The folder holds ``{train,val}_images.npy`` (uint8 [N, imgsz, imgsz, 3]), ``{train,val}_labels.npy``
    (float32 [K, 6]: image index, cls, cx, cy, w, h) and ``meta.json``.
    """
    if imgsz < 32 or n_train < 1 or n_val < 1:
        raise DataError(f"built-in data needs imgsz >= 32 and n_train, n_val >= 1 (got {imgsz}, {n_train}, {n_val})")
    out = builtin_dir(imgsz, n_train, n_val, seed, root)
    if (out / "meta.json").exists() and not force:
        return out
    out.mkdir(parents=True, exist_ok=True)
    total, done = n_train + n_val, 0
    for split_id, (split, n) in enumerate((("train", n_train), ("val", n_val))):
        tmp = out / f"{split}_images.{os.getpid()}.tmp.npy"  # per process: two processes may build one dataset
        images = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8,
                                           shape=(n, imgsz, imgsz, 3))
        rows = []
        for i in range(n):
            img, lab = synthetic.render_image(seed, split_id, i, imgsz)
            images[i] = img
            rows.append(np.concatenate([np.full((len(lab), 1), i, np.float32), lab], 1))
            done += 1
            if progress is not None:
                progress(done, total)
        images.flush()
        del images
        tmp.replace(out / f"{split}_images.npy")
        np.save(out / f"{split}_labels.npy", np.concatenate(rows, 0) if rows else np.zeros((0, 6), np.float32))
    meta = {"name": "shapes10", "names": list(synthetic.CLASS_NAMES), "imgsz": imgsz, "n_train": n_train,
            "n_val": n_val, "seed": seed, "generator_version": synthetic.GENERATOR_VERSION}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def _load_builtin_dir(path: Path) -> DetectionData:
    meta = json.loads((path / "meta.json").read_text())
    splits = {}
    for split, n in (("train", meta["n_train"]), ("val", meta["n_val"])):
        images = np.load(path / f"{split}_images.npy", mmap_mode="r")
        rows = np.load(path / f"{split}_labels.npy")
        idx = rows[:, 0].astype(np.int64)
        order = np.argsort(idx, kind="stable")
        bounds = np.searchsorted(idx[order], np.arange(n + 1))
        labels = [rows[order[bounds[i]:bounds[i + 1]], 1:].copy() for i in range(n)]
        splits[split] = Split(labels=labels, images=images)
    return DetectionData(name=path.name, names=list(meta["names"]), train=splits["train"], val=splits["val"],
                         root=path)


# ---------------------------------------------------------------------------------------------------------
# YOLO format


def parse_yolo_label_file(path: Path, nc: int, *, skip_bad_labels: bool = False,
                          skipped: list[str] | None = None) -> np.ndarray:
    """Parse one YOLO ``.txt`` label file into float32 [M, 5] (cls, cx, cy, w, h), validating each line."""
    rows: list[list[float]] = []
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: label file is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                        f"{exc.start})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read label file ({exc})") from exc
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        problem = _check_yolo_line(line, nc)
        if problem is None:
            rows.append([float(v) for v in line.split()])
            continue
        _bad_label(f"{path}:{lineno}: {problem}", skip_bad_labels, skipped)
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


def _image_files(spec: str | Sequence[str], root: Path, source: Path) -> list[Path]:
    entries = [spec] if isinstance(spec, str) else list(spec)
    files: list[Path] = []
    for entry in entries:
        p = Path(entry)
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
    """YOLO convention: ``.../images/x.jpg`` → ``.../labels/x.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _bad_label(where: str, skip: bool, skipped: list[str] | None) -> None:
    """Raise on a bad label, or (``skip_bad_labels``) warn and record it: nothing is dropped silently."""
    if not skip:
        raise DataError(where)
    warnings.warn(f"skipping bad label {where}", stacklevel=3)
    if skipped is not None:
        skipped.append(where)


def load_yolo(yaml_path: Path | str, *, skip_bad_labels: bool = False) -> DetectionData:
    """Load a YOLO-format dataset from its data YAML (``path``, ``train``, ``val``, ``nc``, ``names``)."""
    yaml_path = Path(yaml_path)
    spec = read_yaml(yaml_path, what="data YAML", error=DataError)
    if not isinstance(spec, dict):
        raise DataError(f"{yaml_path}: expected a mapping with train, val, nc, names")
    for key in ("train", "val", "names"):
        if key not in spec:
            raise DataError(f"{yaml_path}: missing key {key!r}")
    names = spec["names"]
    if not isinstance(names, list | dict):
        raise DataError(f"{yaml_path}: 'names' must be a list of class names (or an index → name mapping), "
                        f"got {names!r:.60}")
    for key in ("train", "val"):
        if not isinstance(spec[key], str | list) or (isinstance(spec[key], list)
                                                     and not all(isinstance(e, str) for e in spec[key])):
            raise DataError(f"{yaml_path}: '{key}' must be a folder, image-list file or list of them, "
                            f"got {spec[key]!r:.60}")
    if "nc" in spec and (not isinstance(spec["nc"], int) or isinstance(spec["nc"], bool)):
        raise DataError(f"{yaml_path}: 'nc' must be an integer, got {spec['nc']!r:.60}")
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    names = [str(n) for n in names]
    if "nc" in spec and int(spec["nc"]) != len(names):
        raise DataError(f"{yaml_path}: nc={spec['nc']} but {len(names)} names are listed")
    root = Path(spec.get("path") or yaml_path.parent)
    root = root if root.is_absolute() else yaml_path.parent / root
    splits = {}
    for split in ("train", "val"):
        files = _image_files(spec[split], root, yaml_path)
        skipped: list[str] = []
        labels = []
        for f in files:
            lp = label_path_for(f)
            labels.append(parse_yolo_label_file(lp, len(names), skip_bad_labels=skip_bad_labels, skipped=skipped)
                          if lp.exists() else np.zeros((0, 5), np.float32))
        splits[split] = Split(labels=labels, files=files, skipped=skipped)
    return DetectionData(name=yaml_path.stem, names=names, train=splits["train"], val=splits["val"], root=root)


# ---------------------------------------------------------------------------------------------------------
# Pascal VOC


def parse_voc_xml(path: Path, names: Sequence[str], *, include_difficult: bool = False,
                  skip_bad_labels: bool = False, skipped: list[str] | None = None) -> np.ndarray:
    """Parse one VOC annotation into float32 [M, 5] normalised YOLO rows, validating each object."""
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
            _bad_label(f"{path}: object {k}: {problem}", skip_bad_labels, skipped)
    return np.array(rows, dtype=np.float32).reshape(-1, 5)


def load_voc(root: Path | str, *, names: Sequence[str] = VOC_NAMES, train_sets: Sequence[str] = ("train",),
             val_sets: Sequence[str] = ("val",), include_difficult: bool = False,
             skip_bad_labels: bool = False) -> DetectionData:
    """Load a Pascal VOC folder (``Annotations/``, ``JPEGImages/``, ``ImageSets/Main/<set>.txt``)."""
    root = Path(root)
    if not (root / "Annotations").is_dir():
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
        splits[split] = Split(labels=labels, files=files, skipped=skipped)
    return DetectionData(name=root.name, names=list(names), train=splits["train"], val=splits["val"], root=root)


# ---------------------------------------------------------------------------------------------------------
# Dispatch


def load_dataset(path_or_builtin: str | Path = BUILTIN, *, imgsz: int = 160, n_train: int = 2000,
                 n_val: int = 400, seed: int = 0, root: Path | str | None = None,
                 skip_bad_labels: bool = False) -> DetectionData:
    """Load ``"builtin"`` (generated and cached on first use), a YOLO data YAML, or a VOC folder.

    ``imgsz``, ``n_train``, ``n_val``, ``seed`` and ``root`` only apply to the built-in data.
    """
    if str(path_or_builtin) == BUILTIN:
        return _load_builtin_dir(make_dataset(imgsz=imgsz, n_train=n_train, n_val=n_val, seed=seed, root=root))
    path = Path(path_or_builtin)
    if not path.exists():
        raise DataError(f"{path}: data path not found (expected 'builtin', a data YAML or a VOC folder)")
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return load_yolo(path, skip_bad_labels=skip_bad_labels)
    if path.is_dir() and (path / "meta.json").exists() and (path / "train_images.npy").exists():
        return _load_builtin_dir(path)
    if path.is_dir() and (path / "Annotations").is_dir():
        return load_voc(path, skip_bad_labels=skip_bad_labels)
    raise DataError(f"{path}: not a data YAML, a VOC folder or a built-in data folder")


# ---------------------------------------------------------------------------------------------------------
# Letterboxed tensors


def letterbox(img: np.ndarray, labels: np.ndarray, imgsz: int) -> tuple[torch.Tensor, np.ndarray]:
    """Resize keeping aspect so the long side is ``imgsz``, pad to a square with grey (114).

    Returns uint8 [3, imgsz, imgsz] and labels re-normalised to the padded square.
    """
    h, w = img.shape[:2]
    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)
    if h == imgsz and w == imgsz:
        return t.contiguous(), labels
    r = imgsz / max(h, w)
    nh, nw = max(1, round(h * r)), max(1, round(w * r))
    if (nh, nw) != (h, w):
        t = F.interpolate(t[None].float(), size=(nh, nw), mode="bilinear", align_corners=False,
                          antialias=r < 1)[0].round().clamp(0, 255).to(torch.uint8)
    out = torch.full((3, imgsz, imgsz), PAD_VALUE, dtype=torch.uint8)
    top, left = (imgsz - nh) // 2, (imgsz - nw) // 2
    out[:, top:top + nh, left:left + nw] = t
    lab = labels.copy()
    if len(lab):
        lab[:, 1] = (lab[:, 1] * nw + left) / imgsz
        lab[:, 2] = (lab[:, 2] * nh + top) / imgsz
        lab[:, 3] = lab[:, 3] * nw / imgsz
        lab[:, 4] = lab[:, 4] * nh / imgsz
    return out, lab


class LetterboxDataset(torch.utils.data.Dataset):
    """A split as ``(uint8 image [3, S, S], labels float32 [M, 5] cls cx cy w h normalised)`` pairs."""

    def __init__(self, split: Split, imgsz: int = 160):
        self.split = split
        self.imgsz = imgsz

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        img, lab = letterbox(self.split.load_image(i), self.split.labels[i], self.imgsz)
        return img, torch.from_numpy(lab)


def collate(batch: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack images; concatenate labels into [K, 6] rows ``image_index, cls, cx, cy, w, h``."""
    imgs = torch.stack([b[0] for b in batch])
    rows = [torch.cat([torch.full((len(b[1]), 1), i, dtype=torch.float32), b[1]], 1) for i, b in enumerate(batch)]
    return imgs, torch.cat(rows, 0) if rows else torch.zeros((0, 6))
