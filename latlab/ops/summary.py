"""Per-layer model summary like YOLOv5's printout: ``index, from, n, params, module, args`` plus totals.

Counts come from the per-operator counter (:mod:`latlab.profiling.counter`, meta tensors, no compute):
``madds`` are multiply-adds (what the ShuffleNetV2 paper calls FLOPs), ``mac_bytes`` memory access cost, and
``yolo_gflops`` YOLOv5's printed convention (2 × thop's count, BN included, measured at a stride-sized input
and scaled to ``imgsz`` as YOLOv5's ``model_info`` does).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from latlab.ops.model import LatlabModel, check_imgsz

LAYER_COLUMNS = ("index", "from", "n", "params", "module", "args", "madds", "mac_bytes")


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


def summarize(model: LatlabModel, imgsz: int = 640, name: str = "") -> ModelSummary:
    """Per-layer table and totals for ``model`` at a square ``imgsz`` input."""
    from latlab.profiling.counter import count_model

    check_imgsz(model, imgsz)
    counts = count_model(model, imgsz=imgsz)
    per_layer = counts.by_layer().set_index("layer")
    rows = []
    for li in model.layer_info:
        has = li.index in per_layer.index
        rows.append({
            "index": li.index, "from": li.from_, "n": li.n, "params": li.params, "module": li.module,
            "args": li.args, "madds": int(per_layer.at[li.index, "madds"]) if has else 0,
            "mac_bytes": int(per_layer.at[li.index, "mac_bytes"]) if has else 0,
        })
    return ModelSummary(
        name=name or str(model.yaml.get("meta", {}).get("description", "")),
        task=model.task, imgsz=imgsz, layers=pd.DataFrame(rows, columns=list(LAYER_COLUMNS)),
        params=int(counts.totals["params"]), madds=int(counts.totals["madds"]),
        mac_bytes=int(counts.totals["mac_bytes"]), yolo_gflops=float(counts.yolo_gflops),
        strides=[float(s) for s in model.stride.tolist()],
    )
