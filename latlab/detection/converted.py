"""Accuracy after conversion: a detector evaluated through a registered backend (ONNX Runtime, its INT8
quantization, OpenVINO, torch.compile, ExecuTorch ...) with the same decode, NMS and pycocotools scoring
as :func:`latlab.detection.evaluate.evaluate`.

The backend runs the network up to the Detect head's convolutions (``Detect.raw_output``: the raw per-level
maps, what a deployed detector exports); ``Detect.decode``, NMS and the metric stay in torch, so a drop in mAP
is the backend's and not a second decoder's. A runner is built for one input shape: the images go through it
``batch`` at a time, written into the input tensor it was prepared with (every runner reads that tensor at
each call; :func:`_check_reads_input` proves it once), and the last, shorter batch is padded and its padding
dropped. INT8 backends calibrate on images of the evaluated dataset's training split
(:func:`latlab.detection.calibration.training_calibration`). The metrics dict records the backend, its
precision, runtime version, device, threads and calibration.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from latlab.detection.calibration import training_calibration
from latlab.detection.data import DetectionData, LetterboxDataset, Split, collate
from latlab.detection.evaluate import dataset_split, evaluate, load_detector, score_predictions
from latlab.detection.loss import find_detect
from latlab.detection.nms import non_max_suppression
from latlab.errors import DeviceError, LatlabError
from latlab.profiling.backends import get_backend, get_runner, list_backends
from latlab.profiling.runtimes.calibration import calibration_for, calibration_source
from latlab.threads import torch_threads

EAGER = "torch"


def raw_head_copy(model: nn.Module) -> tuple[nn.Module, bool]:
    """An eval-mode copy of ``model`` whose Detect returns raw maps, and whether it does (a head that is not
    latlab's ``Detect`` keeps its own decoded output)."""
    net = copy.deepcopy(model).cpu().eval()
    head = find_detect(net)
    if not hasattr(head, "raw_output"):
        return net, False
    head.raw_output = True
    return net, True


def _tensors(out: Any) -> list[torch.Tensor]:
    """A runner's outputs (tensors, numpy arrays, an OpenVINO result, nested lists) as CPU float tensors."""
    if hasattr(out, "to_tuple"):  # OpenVINO's OVDict, in output order
        out = out.to_tuple()
    if isinstance(out, (list, tuple)):
        return [t for o in out for t in _tensors(o)]
    return [torch.as_tensor(out).detach().float().cpu()]


def _decoder(head: nn.Module, raw: bool, backend: str) -> Callable[[Any], torch.Tensor]:
    """Turns a runner's outputs into decoded predictions ``[b, N, no]`` with ``head.decode`` (raw maps)."""

    def decode(out: Any) -> torch.Tensor:
        tensors = _tensors(out)
        if not raw:
            return tensors[0]
        if len(tensors) != int(head.nl):
            raise DeviceError(f"--backend {backend} returned {len(tensors)} outputs; the Detect head has "
                              f"{int(head.nl)} levels")
        with torch.inference_mode():
            return head.decode(tensors)

    return decode


def _largest_gap(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))


def _check_reads_input(fn: Callable[[], Any], net: nn.Module, buffer: torch.Tensor, first: torch.Tensor,
                       backend: str) -> None:
    """Raise unless the prepared call ``fn`` sees what is written into ``buffer`` (its input) between calls:
    its outputs for the first images and for a blank input must differ wherever eager torch's differ by more
    than the backend's own error (an untrained network hardly depends on its input; that proves nothing)."""
    with torch.inference_mode():
        want = [_tensors(net(first)), _tensors(net(torch.zeros_like(first)))]
    got = []
    for x in (first, torch.zeros_like(first)):
        buffer.copy_(x)
        got.append(_tensors(fn()))
    effect, error = _largest_gap(*want), _largest_gap(got[0], want[0])
    if effect > 2 * error and _largest_gap(*got) == 0:
        raise DeviceError(f"--backend {backend}: its runner copies the input when prepared, so it cannot be fed "
                          "the validation images one batch after another")


def evaluate_backend(model: nn.Module, dataset: DetectionData, backend: str = EAGER, *, split: str = "val",
                     imgsz: int = 160, batch: int = 1, threads: int = 1, device: str = "cpu",
                     conf_thres: float = 0.001, iou_thres: float = 0.6, max_det: int = 300,
                     max_images: int | None = None) -> dict:
    """mAP of ``model`` on ``dataset``'s split run through ``backend``; the dict of
    :func:`~latlab.detection.metrics.mean_average_precision` plus ``backend``, ``precision``, ``runtime``,
    ``device``, ``threads``, ``calibration`` (None unless INT8) and ``convert_s`` (see the module docstring).
    ``torch`` is :func:`evaluate` itself (eager FP32)."""
    spec = get_backend(backend)
    record = {"backend": backend, "precision": spec.precision, "runtime": spec.runtime_version(),
              "device": device, "threads": threads, "calibration": None, "convert_s": math.nan}
    if backend == EAGER:  # where the model's weights are (``device`` is for the other backends)
        record["device"] = str(next(model.parameters()).device)
        with torch_threads(threads):
            return {**evaluate(model, dataset, split=split, imgsz=imgsz, batch=batch, conf_thres=conf_thres,
                               iou_thres=iou_thres, max_det=max_det, max_images=max_images), **record}
    runner = get_runner(backend, device, threads=threads)
    data, names = dataset_split(model, dataset, split)
    net, raw = raw_head_copy(model)
    decode = _decoder(find_detect(net), raw, backend)
    buffer = torch.zeros(batch, 3, imgsz, imgsz, device=torch.device(runner.device))
    first = _first_batch(data, imgsz, batch)
    buffer.copy_(first)
    with calibration_source(*training_calibration(dataset)):
        if spec.precision == "int8":
            record["calibration"] = calibration_for(buffer).name
        fn = runner.prepare(net, buffer)
    record["convert_s"] = runner.compile_seconds(fn)

    def predictor(imgs: torch.Tensor) -> list[torch.Tensor]:
        n = imgs.shape[0]
        buffer.zero_()
        buffer[:n].copy_(imgs.float() / 255)
        out = decode(fn())[:n]
        return non_max_suppression(out, conf_thres, iou_thres, max_det=max_det)

    with runner.session():
        _check_reads_input(fn, net, buffer, first, backend)
        metrics = score_predictions(predictor, data, imgsz=imgsz, batch=batch, nc=int(find_detect(net).nc),
                                    names=names, max_images=max_images)
    return {**metrics, **record}


def _first_batch(split: Split, imgsz: int, batch: int) -> torch.Tensor:
    """The first ``batch`` letterboxed images of ``split`` as floats in [0, 1] (repeated when the split is
    shorter): the runner's example input, an image batch of its fixed shape."""
    ds = LetterboxDataset(split, imgsz)
    imgs, _ = collate([ds[i] for i in range(min(len(ds), batch))])
    if imgs.shape[0] == 0:
        return torch.zeros(batch, 3, imgsz, imgsz)
    return imgs.repeat(math.ceil(batch / imgs.shape[0]), 1, 1, 1)[:batch].float() / 255


def evaluate_checkpoint_backend(cfg: str | Path | dict, weights: str | Path, backend: str = EAGER, *,
                                data: str | Path | DetectionData = "builtin", imgsz: int = 160, batch: int = 1,
                                threads: int = 1, device: str = "cpu", conf_thres: float = 0.001,
                                iou_thres: float = 0.6) -> dict:
    """Load a trained checkpoint (:func:`~latlab.detection.evaluate.load_detector`) and evaluate it through
    ``backend`` (:func:`evaluate_backend`); an unknown backend or a missing extra fails before loading."""
    get_runner(backend, device, threads=threads)
    model, ds = load_detector(cfg, weights, data, imgsz=imgsz)
    return evaluate_backend(model, ds, backend, imgsz=imgsz, batch=batch, threads=threads, device=device,
                            conf_thres=conf_thres, iou_thres=iou_thres)


@dataclass
class ConversionDrop:
    """One model under one backend: its mAP and the drop against eager torch FP32 on the same weights."""

    model: str
    backend: str
    precision: str
    runtime: str
    map: float
    map50: float
    drop: float
    drop50: float
    calibration: str | None = None
    error: str = ""  # why the backend could not convert or run this model (its mAP fields are NaN)


def installed_backends(precision: str | None = None) -> list[str]:
    """Registered backends (of ``precision`` when given) whose packages import here."""
    out = []
    for spec in list_backends():
        if precision is not None and spec.precision != precision:
            continue
        try:
            spec.check_installed()
        except DeviceError:
            continue
        out.append(spec.name)
    return out


def conversion_drops(name: str, model: nn.Module, dataset: DetectionData, backends: Sequence[str], *,
                     imgsz: int = 160, batch: int = 1, threads: int = 1,
                     max_images: int | None = None) -> list[ConversionDrop]:
    """mAP of ``model`` under eager torch FP32 (the first row, drop 0) and each of ``backends``, with the drop
    (torch minus backend, in mAP points of [0, 1]) per backend. A backend that cannot convert or run the model
    gives a row with NaN scores and its one-line ``error``, and the other backends still run."""
    rows: list[ConversionDrop] = []
    ref = evaluate_backend(model, dataset, EAGER, imgsz=imgsz, batch=batch, threads=threads, max_images=max_images)
    for backend in (EAGER, *[b for b in backends if b != EAGER]):
        try:
            m = ref if backend == EAGER else evaluate_backend(model, dataset, backend, imgsz=imgsz, batch=batch,
                                                              threads=threads, max_images=max_images)
        except LatlabError:
            raise
        except Exception as e:  # a runtime's own converter failing on this graph is a result, not a crash
            spec = get_backend(backend)
            reason = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:300]
            rows.append(ConversionDrop(name, backend, spec.precision, spec.runtime, math.nan, math.nan,
                                       math.nan, math.nan, None, reason))
            continue
        rows.append(ConversionDrop(name, backend, m["precision"], m["runtime"], float(m["map"]), float(m["map50"]),
                                   float(ref["map"] - m["map"]), float(ref["map50"] - m["map50"]),
                                   m["calibration"]))
    return rows
