"""The built-in shapes dataset: generated from a seed on first use and cached under ``results/data/``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from latlab.detection import synthetic
from latlab.detection.data.dataset import DetectionData, Split
from latlab.errors import DataError

BUILTIN = "builtin"
DATA_ROOT = Path("results") / "data"


def builtin_dir(imgsz: int = 160, n_train: int = 2000, n_val: int = 400, seed: int = 0,
                root: Path | str | None = None, preset: str = synthetic.DEFAULT_PRESET) -> Path:
    """Cache folder of one built-in dataset variant."""
    base = Path(root) if root is not None else DATA_ROOT
    version = synthetic.get_preset(preset).version
    return base / f"{preset}-{imgsz}px-n{n_train}-{n_val}-s{seed}-v{version}"


def make_dataset(*, imgsz: int = 160, n_train: int = 2000, n_val: int = 400, seed: int = 0,
                 root: Path | str | None = None, force: bool = False, preset: str = synthetic.DEFAULT_PRESET,
                 progress: Callable[[int, int], None] | None = None) -> Path:
    """Generate (or reuse) the built-in shapes dataset under ``results/data/`` and return its folder.

    ``preset`` names a :class:`~latlab.detection.synthetic.ShapesPreset` (``shapes10``: the hard default).

    The folder holds ``{train,val}_images.npy`` (uint8 [N, imgsz, imgsz, 3]), ``{train,val}_labels.npy``
    (float32 [K, 6]: image index, cls, cx, cy, w, h) and ``meta.json``.
    """
    if imgsz < 32 or n_train < 1 or n_val < 1:
        raise DataError(f"built-in data needs imgsz >= 32 and n_train, n_val >= 1 (got {imgsz}, {n_train}, {n_val})")
    spec = synthetic.get_preset(preset)
    out = builtin_dir(imgsz, n_train, n_val, seed, root, preset)
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
            img, lab = synthetic.render_image(seed, split_id, i, imgsz, spec)
            images[i] = img
            rows.append(np.concatenate([np.full((len(lab), 1), i, np.float32), lab], 1))
            done += 1
            if progress is not None:
                progress(done, total)
        images.flush()
        del images
        tmp.replace(out / f"{split}_images.npy")
        np.save(out / f"{split}_labels.npy", np.concatenate(rows, 0) if rows else np.zeros((0, 6), np.float32))
    meta = {"name": preset, "names": spec.names, "imgsz": imgsz, "n_train": n_train,
            "n_val": n_val, "seed": seed, "generator_version": spec.version}
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return out


def is_builtin_dir(path: Path) -> bool:
    return path.is_dir() and (path / "meta.json").is_file() and (path / "train_images.npy").is_file()


def load_builtin_dir(path: Path | str, *, skip_bad_labels: bool = True) -> DetectionData:
    """Load a folder written by :func:`make_dataset` (its labels were generated valid: nothing to skip)."""
    path = Path(path)
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
