"""Per-layer model summary like YOLOv5's printout: ``index, from, n, params, module, args`` plus totals.

This module joins a model's YAML layer info with counts it is given (it sits below the counter, so it
does not count); :func:`latlab.profiling.summary.summarize` counts a model and calls
:func:`summary_from_counts`. ``madds`` are multiply-adds (what the ShuffleNetV2 paper calls FLOPs),
``mac_bytes`` memory access cost, and ``yolo_gflops`` YOLOv5's printed convention (2 × thop's count, BN
included, measured at a stride-sized input and scaled to ``imgsz`` as YOLOv5's ``model_info`` does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from latlab.ops.model import LatlabModel

LAYER_COLUMNS = ("index", "from", "n", "params", "module", "args", "madds", "mac_bytes")


class LayerCounts(Protocol):
    """What a summary needs from a count (``latlab.profiling.counter.CountResult`` provides it)."""

    @property
    def totals(self) -> dict[str, int]: ...

    @property
    def yolo_gflops(self) -> float: ...

    def by_layer(self) -> pd.DataFrame: ...


@dataclass
class ModelSummary:
    """What ``latlab build`` prints: one row per YAML layer and the model totals."""

    name: str
    task: str
    imgsz: int
    layers: pd.DataFrame
    params: int
    madds: int
    mac_bytes: int
    yolo_gflops: float
    strides: list[float]

    def to_dict(self) -> dict:
        return {
            "name": self.name, "task": self.task, "imgsz": self.imgsz, "params": self.params,
            "madds": self.madds, "mac_bytes": self.mac_bytes, "yolo_gflops": round(self.yolo_gflops, 3), "strides": self.strides,
            "layers": self.layers.to_dict(orient="records"),
        }


def summary_from_counts(model: LatlabModel, counts: LayerCounts, imgsz: int, name: str = "") -> ModelSummary:
    """Per-layer table and totals of ``model`` from ``counts`` taken at a square ``imgsz`` input."""
    per_layer = counts.by_layer().set_index("layer")
    rows = []
    for li in model.layer_info:
        has = li.index in per_layer.index
        rows.append({
            "index": li.index, "from": li.from_, "n": li.n, "params": li.params, "module": li.module,
            "args": li.args, "madds": int(per_layer.at[li.index, "madds"]) if has else 0,
            "mac_bytes": int(per_layer.at[li.index, "mac_bytes"]) if has else 0,
        })
    totals = counts.totals
    return ModelSummary(
        name=name or str(model.yaml.get("meta", {}).get("description", "")),
        task=model.task, imgsz=imgsz, layers=pd.DataFrame(rows, columns=list(LAYER_COLUMNS)),
        params=int(totals["params"]), madds=int(totals["madds"]),
        mac_bytes=int(totals["mac_bytes"]), yolo_gflops=float(counts.yolo_gflops),
        strides=[float(s) for s in model.stride.tolist()],
    )
