"""The built-in detection images as the INT8 backends' calibration source.

Importing this module (``latlab.detection`` does) registers it with ``latlab.profiling.runtimes.calibration``:
``n`` training images of the built-in dataset, letterboxed to ``imgsz`` like training and evaluation do and
scaled to [0, 1], so an INT8 model is calibrated on the distribution it will see.
"""

from __future__ import annotations

import numpy as np

from latlab.detection.data import load_dataset
from latlab.detection.data.loader import letterbox
from latlab.profiling.runtimes.calibration import set_calibration_source

BUILTIN_CALIBRATION = "builtin"


def builtin_calibration_images(imgsz: int, n: int) -> list[np.ndarray]:
    """``n`` letterboxed built-in training images, float32 ``[3, imgsz, imgsz]`` in [0, 1]."""
    data = load_dataset(BUILTIN_CALIBRATION, imgsz=imgsz, n_train=max(n, 1), n_val=1)
    empty = np.zeros((0, 5), dtype=np.float32)
    split = data.train
    return [letterbox(split.load_image(i), empty, imgsz)[0].numpy().astype(np.float32) / 255.0
            for i in range(min(n, len(split)))]


set_calibration_source(BUILTIN_CALIBRATION, builtin_calibration_images)
