"""What every loader returns: a :class:`DetectionData` (class names + a train and a val :class:`Split`).

A split knows how to load image ``i`` as uint8 RGB HWC (from an in-memory array or lazily from a file) and
holds its labels as ``[M, 5]`` arrays ``cls, cx, cy, w, h`` normalised to the image (YOLO convention).

Nothing bad is dropped silently: a skipped label line/object is recorded in ``Split.skipped_labels``
("file:line: reason") and an image that cannot be decoded in ``Split.skipped_images`` (path → reason), each
with a warning naming the file; :meth:`DetectionData.skip_counts` is what a run writes into its meta.json.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from latlab.errors import DataError

IMG_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# What Pillow raises on a broken file besides OSError (truncated PNG chunks, bad headers, decompression bombs).
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)


@dataclass
class Split:
    """One split: an image source (in-memory array or files) and normalised YOLO labels per image."""

    labels: list[np.ndarray]
    images: np.ndarray | None = None  # uint8 [N, H, W, 3] for in-memory data (the built-in set: a memmap)
    files: list[Path] | None = None
    skipped_labels: list[str] = field(default_factory=list)  # "file:line: reason" for every skipped label
    skipped_images: dict[str, str] = field(default_factory=dict)  # path → why it could not be decoded

    def __len__(self) -> int:
        return len(self.labels)

    def load_image(self, i: int) -> np.ndarray:
        """Image ``i`` as uint8 RGB [H, W, 3]; a file that cannot be decoded raises :class:`DataError`."""
        if self.images is not None:
            return np.array(self.images[i])  # copy: the cache is a read-only memmap
        assert self.files is not None
        return read_image(self.files[i])

    @property
    def n_boxes(self) -> int:
        return int(sum(len(lb) for lb in self.labels))

    def __getstate__(self) -> dict[str, Any]:
        """Pickle a memmap by its file (DataLoader workers started by spawn reopen it, not copy it)."""
        state = dict(self.__dict__)
        if isinstance(self.images, np.memmap) and self.images.filename:
            state["images"] = Path(self.images.filename)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("images"), Path):
            state["images"] = np.load(state["images"], mmap_mode="r")
        self.__dict__.update(state)


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

    def skip_counts(self) -> dict[str, int]:
        """Skipped label lines/objects and undecodable images over both splits (for a run's meta.json)."""
        return {"skipped_labels": len(self.train.skipped_labels) + len(self.val.skipped_labels),
                "skipped_images": len(self.train.skipped_images) + len(self.val.skipped_images)}

    def summary(self) -> dict:
        return {"name": self.name, "nc": self.nc, "train_images": len(self.train),
                "train_boxes": self.train.n_boxes, "val_images": len(self.val), "val_boxes": self.val.n_boxes,
                **self.skip_counts()}


def read_image(path: Path | str) -> np.ndarray:
    """Decode an image file to uint8 RGB [H, W, 3] with Pillow; a missing or broken file raises DataError."""
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: image file not found") from exc
    except Image.DecompressionBombError as exc:
        raise DataError(f"{path}: image too large to decode safely ({exc.args[0] if exc.args else exc}); "
                        f"Pillow's limit is {Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels") from None
    except DECODE_ERRORS as exc:
        raise DataError(f"{path}: cannot decode image ({exc})") from exc


def bad_label(where: str, skip: bool, skipped: list[str]) -> None:
    """Raise on a bad label, or (``skip_bad_labels``) warn naming the file and record it in ``skipped``."""
    if not skip:
        raise DataError(where)
    warnings.warn(f"skipping bad label {where}", stacklevel=3)
    skipped.append(where)
