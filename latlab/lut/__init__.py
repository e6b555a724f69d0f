"""Latency tables: build per-block tables on a target (or via a board kit), predict, check the accuracy.

- :mod:`latlab.lut.keys`: the canonical key of a block instance (every YAML layer is one);
- :mod:`latlab.lut.table`: the portable JSON file and its validation;
- :mod:`latlab.lut.build`: time the blocks of a set of architectures (resumable), calibrate (which
  architectures a search space needs is :mod:`latlab.search.coverage`; this package never imports the search);
- :mod:`latlab.lut.measure`: time blocks and models with a table's protocol, count blocks (build and predict);
- :mod:`latlab.lut.calibration`: fit the map from block sums to end-to-end latency;
- :mod:`latlab.lut.kit` / ``kit_runner.py``: the onnxruntime-only board kit and its import;
- :mod:`latlab.lut.predict`: block sum + calibration (``LatencyPredictor`` is what the search uses);
- :mod:`latlab.lut.check`: accuracy against end-to-end measurements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from latlab.lut.predict import LatencyPredictor


def load_predictor(path: str | Path, **kwargs: Any) -> LatencyPredictor:
    """``LatencyPredictor(path, **kwargs)`` (``backend``, ``threads``, ``imgsz`` checks; ``on_missing``)."""
    return LatencyPredictor(path, **kwargs)


__all__ = ["LatencyPredictor", "load_predictor"]
