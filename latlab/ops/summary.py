"""Per-layer model summary like YOLOv5's printout: ``index, from, n, params, module, args`` plus totals.

``madds`` here is the conv/linear multiply-add count from forward hooks (what the ShuffleNetV2 paper calls
FLOPs); ``yolo_gflops`` is YOLOv5's printed convention: thop's count (conv + bias + BN as thop counts it)
× 2, measured at a stride-sized input and scaled to ``imgsz`` exactly as YOLOv5's ``model_info`` does.
The full per-operator counter lives in :mod:`latlab.profiling.counter`.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from latlab.errors import ConfigError
from latlab.ops.model import LatlabModel

LAYER_COLUMNS = ("index", "from", "n", "params", "module", "args", "madds")


@dataclass
class ModelSummary:
    """What ``latlab build`` prints: one row per YAML layer and the model totals."""

    name: str
    task: str
    imgsz: int
    layers: pd.DataFrame
    params: int
    madds: int
    yolo_gflops: float
    strides: list[float]

    def to_dict(self) -> dict:
        return {
            "name": self.name, "task": self.task, "imgsz": self.imgsz, "params": self.params,
            "madds": self.madds, "yolo_gflops": round(self.yolo_gflops, 3), "strides": self.strides,
            "layers": self.layers.to_dict(orient="records"),
        }


def check_imgsz(model: LatlabModel, imgsz: int) -> None:
    """Detectors need an input size that is a multiple of their largest stride."""
    if imgsz < 1:
        raise ConfigError(f"imgsz must be a positive integer, got {imgsz}")
    s = model.max_stride
    if model.is_detector and imgsz % s:
        raise ConfigError(f"imgsz {imgsz} is not a multiple of the model's max stride {s}; "
                          f"try {max(s, round(imgsz / s) * s)}")


def conv_linear_madds(model: nn.Module, x: torch.Tensor) -> dict[str, int]:
    """Multiply-adds of every Conv2d/Linear, keyed by module path, from one forward pass."""
    counts: dict[str, int] = {}
    handles = []

    def hook(name: str):
        def fn(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
            if isinstance(mod, nn.Conv2d):
                k = mod.kernel_size[0] * mod.kernel_size[1] * (mod.in_channels // mod.groups)
                counts[name] = counts.get(name, 0) + out.numel() * k
            else:
                counts[name] = counts.get(name, 0) + out.numel() * mod.in_features
        return fn

    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d | nn.Linear):
            handles.append(mod.register_forward_hook(hook(name)))
    try:
        with torch.inference_mode():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return counts


def yolo_gflops(model: LatlabModel, imgsz: int) -> float:
    """YOLOv5's printed GFLOPs: ``thop.profile`` at a stride-sized input × 2, scaled to ``imgsz``²."""
    import thop

    s = max(model.max_stride, 32) if model.is_detector else imgsz
    probe = copy.deepcopy(model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ops = thop.profile(probe, inputs=(torch.zeros(1, model.in_channels, s, s),), verbose=False)[0]
    return float(ops) / 1e9 * 2 * (imgsz / s) ** 2


def summarize(model: LatlabModel, imgsz: int = 640, name: str = "") -> ModelSummary:
    """Per-layer table and totals for ``model`` at a square ``imgsz`` input."""
    check_imgsz(model, imgsz)
    was_training = model.training
    model.eval()
    try:
        madds = conv_linear_madds(model, torch.zeros(1, model.in_channels, imgsz, imgsz))
    finally:
        model.train(was_training)
    rows = []
    for li in model.layer_info:
        prefix = f"layers.{li.index}."
        rows.append({
            "index": li.index, "from": li.from_, "n": li.n, "params": li.params, "module": li.module,
            "args": li.args, "madds": sum(v for k, v in madds.items() if k.startswith(prefix)),
        })
    df = pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
    return ModelSummary(
        name=name or str(model.yaml.get("meta", {}).get("description", "")),
        task=model.task, imgsz=imgsz, layers=df, params=sum(p.numel() for p in model.parameters()),
        madds=int(sum(madds.values())), yolo_gflops=yolo_gflops(model, imgsz),
        strides=[float(s) for s in model.stride.tolist()],
    )
