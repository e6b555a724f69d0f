"""``summarize``: count a built model and return its per-layer summary (what ``latlab build`` prints)."""

from __future__ import annotations

from latlab.ops.model import LatlabModel, check_imgsz
from latlab.ops.summary import LAYER_COLUMNS, ModelSummary, summary_from_counts
from latlab.profiling.counter import count_model

__all__ = ["LAYER_COLUMNS", "ModelSummary", "summarize"]


def summarize(model: LatlabModel, imgsz: int = 640, name: str = "") -> ModelSummary:
    """Per-layer table and totals for ``model`` at a square ``imgsz`` input (meta-tensor count, no compute)."""
    check_imgsz(model, imgsz)
    return summary_from_counts(model, count_model(model, imgsz=imgsz), imgsz, name)
