"""Evaluate a detector on a dataset split: eval-mode forward, own NMS, pycocotools mAP.

Boxes are compared in the letterboxed input space. Letterboxing is a uniform scale plus a shift, which
leaves every IoU unchanged, so mAP equals the mAP in original image pixels.

The forward pass runs where the model's weights are (``amp`` autocasts it there, :mod:`.device`); NMS and
the metric run on the CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from latlab.detection.checkpoint import load_checkpoint, weights_from
from latlab.detection.data import DetectionData, LetterboxDataset, Split, collate, load_dataset
from latlab.detection.device import model_device, parse_device
from latlab.detection.loss import find_detect
from latlab.detection.metrics import mean_average_precision
from latlab.detection.nms import non_max_suppression
from latlab.errors import ConfigError
from latlab.ops.builder import build_model


def cxcywh_to_xyxy_pixels(labels: torch.Tensor, imgsz: int) -> torch.Tensor:
    """[M, 5] ``cls cx cy w h`` (normalised) → [M, 5] ``cls x1 y1 x2 y2`` in pixels."""
    out = labels.clone()
    out[:, 1] = (labels[:, 1] - labels[:, 3] / 2) * imgsz
    out[:, 2] = (labels[:, 2] - labels[:, 4] / 2) * imgsz
    out[:, 3] = (labels[:, 1] + labels[:, 3] / 2) * imgsz
    out[:, 4] = (labels[:, 2] + labels[:, 4] / 2) * imgsz
    return out


@torch.inference_mode()  # no autograd bookkeeping at all (no_grad still tracks version counters)
def predict(model: nn.Module, imgs: torch.Tensor, *, conf_thres: float = 0.001, iou_thres: float = 0.6,
            max_det: int = 300) -> list[torch.Tensor]:
    """Detections [n, 6] ``x1 y1 x2 y2 score cls`` (on the CPU) per image of a float batch in [0, 1]."""
    was_training = model.training
    model.eval()
    try:
        out = model(imgs)
    finally:
        model.train(was_training)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return non_max_suppression(out.float().cpu(), conf_thres, iou_thres, max_det=max_det)


Predictor = Callable[[torch.Tensor], list[torch.Tensor]]


def score_predictions(predictor: Predictor, split: Split, *, imgsz: int, batch: int, nc: int,
                      names: list[str] | None = None, max_images: int | None = None) -> dict:
    """mAP of ``predictor`` (uint8 letterboxed batch ``[b, 3, S, S]`` → detections per image) on ``split``:
    the one scoring loop of :func:`evaluate` and of a converted model's evaluation (``latlab.detection.converted``).
    The last batch holds the remaining images (fewer than ``batch``)."""
    ds = LetterboxDataset(split, imgsz)
    n = len(ds) if max_images is None else min(len(ds), max_images)
    preds, targets = [], []
    for start in range(0, n, batch):
        imgs, labels = collate([ds[i] for i in range(start, min(n, start + batch))])
        for k, det in enumerate(predictor(imgs)):
            preds.append(det)
            targets.append(cxcywh_to_xyxy_pixels(labels[labels[:, 0] == k, 1:], imgsz))
    return mean_average_precision(preds, targets, names=names, nc=nc)


def dataset_split(model: nn.Module, dataset: DetectionData | Split, split: str) -> tuple[Split, list[str] | None]:
    """The split to score and the class names; a dataset whose class count differs from the head's is an error."""
    if not isinstance(dataset, DetectionData):
        return dataset, None
    nc_model = int(find_detect(model).nc)
    if nc_model != dataset.nc:
        raise ConfigError(f"model has nc={nc_model} but dataset {dataset.name!r} has nc={dataset.nc}")
    return dataset.split(split), dataset.names


def evaluate(model: nn.Module, dataset: DetectionData | Split, *, split: str = "val", imgsz: int = 160,
             batch: int = 32, conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300,
             max_images: int | None = None, amp: str = "off") -> dict:
    """mAP of ``model`` on ``dataset``'s split; the dict of :func:`mean_average_precision`.

    ``max_images`` evaluates only the first images of the split (fast intermediate checks). The images go
    to the device of ``model``'s weights; ``amp`` (``off``, ``auto``, ``fp16``, ``bf16``) autocasts there.
    """
    dev = model_device(model, amp)
    data, names = dataset_split(model, dataset, split)

    def predictor(imgs: torch.Tensor) -> list[torch.Tensor]:
        with dev.autocast():
            return predict(model, dev.batch(imgs).float() / 255, conf_thres=conf_thres, iou_thres=iou_thres,
                           max_det=max_det)

    nc = len(names) if names is not None else int(find_detect(model).nc)
    return score_predictions(predictor, data, imgsz=imgsz, batch=batch, nc=nc, names=names, max_images=max_images)


def load_detector(cfg: str | Path | dict, weights: str | Path, data: str | Path | DetectionData = "builtin", *,
                  imgsz: int = 160, prefer_ema: bool = True, width_multiple: float | None = None,
                  depth_multiple: float | None = None) -> tuple[nn.Module, DetectionData]:
    """``cfg`` built for ``data``'s classes with ``weights`` loaded (a latlab checkpoint or state dict, written
    on any device; the EMA weights when ``prefer_ema``), and the loaded data."""
    ds = data if isinstance(data, DetectionData) else load_dataset(data, imgsz=imgsz)
    ckpt = load_checkpoint(weights)
    if "nc" in ckpt and int(ckpt["nc"]) != ds.nc:
        raise ConfigError(f"{weights}: checkpoint was trained with nc={ckpt['nc']} but data {ds.name!r} has "
                          f"nc={ds.nc}")
    model = build_model(cfg, nc=ds.nc, width_multiple=width_multiple, depth_multiple=depth_multiple)
    try:
        model.load_state_dict(weights_from(ckpt, prefer_ema))
    except RuntimeError as exc:
        raise ConfigError(f"{weights}: weights do not fit model {cfg} ({str(exc).splitlines()[0]})") from exc
    return model, ds


def evaluate_checkpoint(cfg: str | Path | dict, weights: str | Path, *, data: str | Path | DetectionData = "builtin",
                        imgsz: int = 160, batch: int = 32, conf_thres: float = 0.001, iou_thres: float = 0.6,
                        prefer_ema: bool = True, width_multiple: float | None = None,
                        depth_multiple: float | None = None, device: str = "cpu", amp: str = "auto") -> dict:
    """Build ``cfg`` for ``data``'s classes, load ``weights`` (:func:`load_detector`), evaluate on ``device``
    with AMP ``amp`` (:func:`latlab.detection.device.parse_device`)."""
    dev = parse_device(device, amp)  # a missing GPU fails before the data is loaded
    model, ds = load_detector(cfg, weights, data, imgsz=imgsz, prefer_ema=prefer_ema,
                              width_multiple=width_multiple, depth_multiple=depth_multiple)
    with dev.session():
        return evaluate(dev.place(model), ds, imgsz=imgsz, batch=batch, conf_thres=conf_thres,
                        iou_thres=iou_thres, amp=dev.amp)
