"""Calibration inputs for the INT8 backends: real images when the model takes an image batch.

A calibration *source* maps ``(imgsz, n)`` to ``n`` float32 ``[3, imgsz, imgsz]`` images in [0, 1] (what a
detector is fed). The detection layer registers the built-in dataset as the default source
(``latlab.detection.calibration``); profiling cannot import it (it sits below detection).
:func:`calibration_source` swaps in another source for a block of code (``latlab val --backend`` calibrates
on the training split of the data it evaluates). An input that is not
one square 3-channel image batch (a single block in ``lut build``, several tensors) is calibrated on copies of
the example input with Gaussian noise of its own spread: there are no real activations to use.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from latlab.errors import DeviceError
from latlab.profiling.backends import flatten_tensors

CalibrationSource = Callable[[int, int], list[np.ndarray]]
DEFAULT_CALIBRATION_IMAGES = 32
PERTURBED_COPIES = 8

_SOURCES: dict[str, CalibrationSource] = {}


def set_calibration_source(name: str, source: CalibrationSource) -> None:
    """Make ``source`` (named ``name``, part of the INT8 cache key) the images INT8 backends calibrate on."""
    _SOURCES.clear()
    _SOURCES[name] = source


@contextlib.contextmanager
def calibration_source(name: str, source: CalibrationSource) -> Iterator[None]:
    """Calibrate on ``source`` (named ``name``) inside the block; the previous source is back afterwards."""
    previous = dict(_SOURCES)
    set_calibration_source(name, source)
    try:
        yield
    finally:
        _SOURCES.clear()
        _SOURCES.update(previous)


@dataclass(frozen=True)
class Calibration:
    """The calibration feeds (one flat list of arrays per step) and a name that identifies them."""

    name: str
    batches: list[list[np.ndarray]]


def _is_image_batch(tensors: list[torch.Tensor]) -> bool:
    return (len(tensors) == 1 and tensors[0].dim() == 4 and tensors[0].shape[1] == 3
            and tensors[0].shape[2] == tensors[0].shape[3])


def calibration_for(example_input: object, n: int = DEFAULT_CALIBRATION_IMAGES) -> Calibration:
    """The calibration feeds for a model called on ``example_input`` (see the module docstring)."""
    tensors = [t.detach().cpu().float() for t in flatten_tensors(example_input)]
    if not tensors:
        raise DeviceError("INT8 calibration needs tensor inputs, got none")
    if _is_image_batch(tensors) and _SOURCES:
        (name, source), = _SOURCES.items()
        batch, imgsz = tensors[0].shape[0], int(tensors[0].shape[2])
        images = source(imgsz, n)
        if not images:
            raise DeviceError(f"INT8 calibration source '{name}' returned no images at {imgsz} px")
        steps = [np.stack([images[(i * batch + j) % len(images)] for j in range(batch)]).astype(np.float32)
                 for i in range(max(1, len(images) // batch))]
        return Calibration(f"{name}-{imgsz}-{len(images)}", [[s] for s in steps])
    rng = np.random.default_rng(0)
    arrays = [t.numpy() for t in tensors]
    steps = [[(a + rng.normal(0.0, float(a.std()) or 1.0, a.shape)).astype(np.float32) for a in arrays]
             for _ in range(PERTURBED_COPIES)]
    return Calibration(f"perturbed-{PERTURBED_COPIES}", [arrays, *steps])
