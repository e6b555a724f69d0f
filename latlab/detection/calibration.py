"""Detection images as the INT8 backends' calibration source: the built-in set by default, or a dataset's
training split.

Importing this module (``latlab.detection`` does) registers the built-in set with
``latlab.profiling.runtimes.calibration``: ``n`` training images of the built-in dataset, letterboxed to
``imgsz`` like training and evaluation do and scaled to [0, 1], so an INT8 model is calibrated on the
distribution it will see. :func:`training_calibration` names the same for any dataset's training split (what
``latlab val --backend`` and the search's ``--accuracy-backend`` calibrate on).
"""

from __future__ import annotations

import numpy as np

from latlab.detection.data import DetectionData, Split, load_dataset
from latlab.detection.data.loader import letterbox
from latlab.profiling.runtimes.calibration import CalibrationSource, set_calibration_source

BUILTIN_CALIBRATION = "builtin"


def split_images(split: Split, imgsz: int, n: int) -> list[np.ndarray]:
    """``n`` images of ``split`` spread evenly over it, letterboxed, float32 ``[3, imgsz, imgsz]`` in [0, 1]."""
    empty = np.zeros((0, 5), dtype=np.float32)
    picks = np.unique(np.linspace(0, len(split) - 1, num=min(n, len(split))).round().astype(int))
    return [letterbox(split.load_image(int(i)), empty, imgsz)[0].numpy().astype(np.float32) / 255.0
            for i in picks]


def builtin_calibration_images(imgsz: int, n: int) -> list[np.ndarray]:
    """``n`` letterboxed built-in training images, float32 ``[3, imgsz, imgsz]`` in [0, 1]."""
    data = load_dataset(BUILTIN_CALIBRATION, imgsz=imgsz, n_train=max(n, 1), n_val=1)
    return split_images(data.train, imgsz, n)


def training_calibration(data: DetectionData) -> tuple[str, CalibrationSource]:
    """(name, source) of ``data``'s training split as calibration images; the name (dataset name, folder and
    size) is part of the INT8 cache key, so two datasets never share a quantized model."""
    name = f"train:{data.name}:{data.root}:{len(data.train)}"
    return name, lambda imgsz, n: split_images(data.train, imgsz, n)


set_calibration_source(BUILTIN_CALIBRATION, builtin_calibration_images)
