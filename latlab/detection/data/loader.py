"""From a split to training batches: letterboxed tensors, collation, and a DataLoader with worker processes.

Images are decoded in :meth:`LetterboxDataset.__getitem__`, so with ``workers > 0`` the decoding and
letterboxing of file datasets run in DataLoader worker processes. An image that cannot be decoded is
dropped from its batch with a warning naming the file; the batch carries its path back to the main
process (workers hold copies of the split), where :class:`BatchLoader` records it in
``Split.skipped_images``.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from latlab.detection.data.dataset import Split
from latlab.errors import ConfigError, DataError

PAD_VALUE = 114


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


@dataclass(frozen=True)
class UnreadableImage:
    """What :class:`LetterboxDataset` returns for an image it could not decode (dropped by :func:`collate`)."""

    path: str
    reason: str
    imgsz: int


class LetterboxDataset(torch.utils.data.Dataset):
    """A split as ``(uint8 image [3, S, S], labels float32 [M, 5] cls cx cy w h normalised)`` pairs.

    An undecodable image gives an :class:`UnreadableImage` instead (warned once per process, recorded in
    the split this process holds).
    """

    def __init__(self, split: Split, imgsz: int = 160):
        self.split = split
        self.imgsz = imgsz

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor] | UnreadableImage:
        path = str(self.split.files[i]) if self.split.files is not None else ""
        if path in self.split.skipped_images:
            return UnreadableImage(path, self.split.skipped_images[path], self.imgsz)
        try:
            img = self.split.load_image(i)
        except DataError as exc:
            warnings.warn(f"skipping unreadable image {exc}", stacklevel=2)
            self.split.skipped_images[path] = str(exc)
            return UnreadableImage(path, str(exc), self.imgsz)
        img_t, lab = letterbox(img, self.split.labels[i], self.imgsz)
        return img_t, torch.from_numpy(lab)


@dataclass
class Batch:
    """Stacked images uint8 [B, 3, S, S], label rows [K, 6] ``image_index, cls, cx, cy, w, h`` and the
    images dropped from it as unreadable (path → reason). Unpacks as ``imgs, targets = batch``."""

    imgs: torch.Tensor
    targets: torch.Tensor
    unreadable: dict[str, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[torch.Tensor]:
        return iter((self.imgs, self.targets))

    def __len__(self) -> int:
        return len(self.imgs)

    def pin_memory(self) -> Batch:
        """Page-locked copies (DataLoader's ``pin_memory=True`` calls this on custom batch types)."""
        return Batch(self.imgs.pin_memory(), self.targets.pin_memory(), self.unreadable)


def collate(items: list[tuple[torch.Tensor, torch.Tensor] | UnreadableImage]) -> Batch:
    """Stack images and concatenate labels into [K, 6] rows; unreadable images are left out (and listed)."""
    unreadable = {it.path: it.reason for it in items if isinstance(it, UnreadableImage)}
    good = [it for it in items if not isinstance(it, UnreadableImage)]
    if not good:
        size = items[0].imgsz if items else 0  # type: ignore[union-attr]
        return Batch(torch.zeros((0, 3, size, size), dtype=torch.uint8), torch.zeros((0, 6)), unreadable)
    imgs = torch.stack([b[0] for b in good])
    rows = [torch.cat([torch.full((len(b[1]), 1), i, dtype=torch.float32), b[1]], 1) for i, b in enumerate(good)]
    return Batch(imgs, torch.cat(rows, 0), unreadable)


class _OrderedBatches(torch.utils.data.Sampler[list[int]]):
    """Index lists of ``batch`` consecutive entries of ``order`` (set per epoch; iterated in the main process)."""

    def __init__(self, batch: int):
        super().__init__()
        self.batch = batch
        self.order = torch.zeros(0, dtype=torch.long)

    def __iter__(self) -> Iterator[list[int]]:
        for start in range(0, len(self.order), self.batch):
            yield self.order[start:start + self.batch].tolist()

    def __len__(self) -> int:
        return -(-len(self.order) // self.batch)


class BatchLoader:
    """Collated batches of a :class:`LetterboxDataset` in a given order, decoded in ``workers`` processes.

    ``workers=0`` decodes in this process (the same batches, in the same order). Workers persist across
    epochs; ``device`` is where the batches go next: a CUDA device turns on pinned memory.
    """

    def __init__(self, dataset: LetterboxDataset, batch: int, *, workers: int = 0,
                 device: torch.device | str = "cpu"):
        if workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 decodes in the training process), got {workers}")
        if batch < 1:
            raise ConfigError(f"batch must be >= 1, got {batch}")
        self.dataset = dataset
        self._batches = _OrderedBatches(batch)
        self._loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=self._batches, num_workers=workers, collate_fn=collate,
            pin_memory=torch.device(device).type == "cuda", persistent_workers=workers > 0)

    def epoch(self, order: torch.Tensor) -> Iterator[Batch]:
        """The batches of ``order`` (dataset indices), recording unreadable images in the dataset's split."""
        self._batches.order = order
        for b in self._loader:
            self.dataset.split.skipped_images.update(b.unreadable)
            yield b
