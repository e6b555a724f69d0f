"""``LatlabModel``: the module a YAML builds into, with YOLOv5's per-layer index kept beside it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from latlab.validate import image_size


@dataclass
class LayerInfo:
    """One YAML row after parsing: where its input comes from and what was built."""

    index: int
    from_: int | list[int]
    n: int
    module: str
    args: list[Any]
    params: int
    out_channels: int
    yaml_args: list[Any] = field(default_factory=list)


class LatlabModel(nn.Module):
    """A YAML-built network. ``layers[i]`` is YAML row ``i`` (module path ``layers.<i>``).

    ``forward`` follows YOLOv5: each layer reads the previous output or the saved outputs named by ``from``.
    Detectors return raw maps in train mode and decoded predictions in eval mode (see ``Detect``).
    """

    def __init__(self, layers: list[nn.Module], info: list[LayerInfo], cfg: dict[str, Any], in_channels: int):
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.layer_info = info
        self.yaml = cfg
        self.in_channels = in_channels
        self.save = sorted({j for li in info for j in _sources(li) if j != -1})
        self.is_detector = type(layers[-1]).__name__ == "Detect"
        self.nc = int(cfg.get("nc", 0))
        self.names = list(cfg.get("names") or [str(i) for i in range(self.nc)])
        self.register_buffer("stride", torch.tensor([1.0]), persistent=False)

    @property
    def detect(self) -> nn.Module | None:
        """The Detect head (last layer) of a detector, else None."""
        return self.layers[-1] if self.is_detector else None

    @property
    def task(self) -> str:
        return "detect" if self.is_detector else "classify"

    @property
    def max_stride(self) -> int:
        return int(self.stride.max())

    def forward(self, x: torch.Tensor) -> Any:
        saved: dict[int, Any] = {}
        for i, (m, li) in enumerate(zip(self.layers, self.layer_info, strict=True)):
            f = li.from_
            if isinstance(f, list):
                x = [x if j == -1 else saved[j] for j in f]
            elif f != -1:
                x = saved[f]
            x = m(x)
            if i in self.save:
                saved[i] = x
        return x


def _sources(li: LayerInfo) -> list[int]:
    return li.from_ if isinstance(li.from_, list) else [li.from_]


def max_stride(model: nn.Module) -> int:
    """The model's largest stride (``model.stride``), 1 when it declares none."""
    stride = getattr(model, "stride", None)
    if isinstance(stride, torch.Tensor) and stride.numel():
        return int(stride.max())
    return 1


def default_imgsz(model: nn.Module) -> int:
    """The config's ``imgsz`` if it has one, else 640 for detectors and 224 for classifiers."""
    cfg = getattr(model, "yaml", None) or {}
    if cfg.get("imgsz"):
        return int(cfg["imgsz"])
    return 640 if getattr(model, "is_detector", False) else 224


def check_imgsz(model: nn.Module, imgsz: int, source: str = "") -> None:
    """Raise ``ConfigError`` unless ``imgsz`` is a positive integer within the image-size limit and, for
    detectors, a multiple of the max stride."""
    stride = max_stride(model) if getattr(model, "is_detector", False) else 1
    image_size(imgsz, f"{source}: imgsz" if source else "imgsz", stride=stride, low=1)
