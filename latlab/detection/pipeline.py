"""What a user's stopwatch sees: letterbox preprocessing + model + NMS of one camera frame, stage by stage.

``profile_pipeline`` times, in the same interleaved rounds (``run_interleaved``, wall clock, no speed
reference):

- ``preprocess``: a real-size uint8 HWC frame (default a 1280×720 rendering of the built-in data) →
  letterbox (resize keeping aspect so the long side is ``imgsz``, pad to a square with grey 114; the same
  ``letterbox`` training and ``latlab val`` use) → float in [0, 1] → ``[1, 3, imgsz, imgsz]``;
- ``model``: one forward pass through the chosen backend's runner. The head's grid/anchor decode (sigmoid,
  xy/wh from grid and anchors) is part of the eval-mode ``Detect`` forward, so it is inside this stage,
  as it is in an ONNX export;
- ``nms``: score = objectness × class, confidence filter, xywh → xyxy, class-aware greedy NMS
  (``latlab.detection.nms.non_max_suppression``) on the model's actual outputs for this frame;
- ``end-to-end``: the three back to back, NMS on the outputs the model call just returned.

NMS cost grows with the boxes above the confidence threshold. The default is ``latlab val``'s
(``conf 0.001``, ``IoU 0.6``, multi-label): the most boxes, the upper end of NMS cost; a deployed detector
typically uses ``conf 0.25`` (YOLOv5's ``detect.py``): pass ``conf_thres``. The boxes that reach NMS and the
detections kept are reported with the table, because an untrained model's boxes are not a trained one's.
The model stage runs on the letterboxed frame bound when the runner prepared it (every call preprocesses
the same frame, so its values are the same); on CUDA that frame already sits on the GPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from latlab.detection.data.loader import letterbox
from latlab.detection.nms import non_max_suppression
from latlab.detection.synthetic import render_image
from latlab.errors import ConfigError
from latlab.ops.sources import resolve_model
from latlab.profiling.backends import Clock, Runner, get_runner
from latlab.profiling.compare import run_interleaved
from latlab.profiling.layerwise import model_input, timing_backend
from latlab.profiling.timer import DEFAULT_ESTIMATOR, check_estimator

VAL_CONF = 0.001  # latlab val / evaluate's defaults
VAL_IOU = 0.6
DEPLOY_CONF = 0.25  # YOLOv5 detect.py's default, for comparison
FRAME_HW = (720, 1280)
STAGES = ("preprocess", "model", "nms")
E2E = "end-to-end"


def check_threshold(value: float, what: str) -> float:
    """A confidence or IoU threshold in [0, 1]; a one-line ``ConfigError`` naming ``what`` otherwise."""
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
        raise ConfigError(f"{what} {value!r}: expected a threshold in [0, 1]")
    return float(value)


def example_frame(height: int = FRAME_HW[0], width: int = FRAME_HW[1], seed: int = 0) -> np.ndarray:
    """A ``height×width×3`` uint8 RGB frame: a built-in validation image rendered at the long side, cropped."""
    img, _ = render_image(seed, 1, 0, max(height, width))
    return np.ascontiguousarray(img[:height, :width])


def preprocess(frame: np.ndarray | torch.Tensor, imgsz: int) -> torch.Tensor:
    """Letterbox a uint8 HWC frame to ``imgsz`` and normalise: float32 ``[1, 3, imgsz, imgsz]`` in [0, 1]."""
    img = frame.numpy() if isinstance(frame, torch.Tensor) else frame
    if img.ndim != 3 or img.shape[2] != 3:
        raise ConfigError(f"frame of shape {tuple(img.shape)}: expected height×width×3 (HWC, RGB)")
    chw, _ = letterbox(img, np.zeros((0, 5), np.float32), imgsz)
    return chw.float().div_(255).unsqueeze(0)


def model_prediction(out: Any) -> torch.Tensor:
    """The first output of a runner's call (tensor, numpy array, list of them or a mapping) as a CPU
    float tensor: the eval-mode Detect output ``[batch, boxes, 5 + classes]``."""
    if not isinstance(out, torch.Tensor | np.ndarray) and hasattr(out, "values"):
        out = list(out.values())
    if isinstance(out, list | tuple):
        out = out[0]
    t = out if isinstance(out, torch.Tensor) else torch.from_numpy(np.asarray(out))
    return t.detach().float().cpu()


def nms_candidates(pred: torch.Tensor, conf_thres: float) -> int:
    """(box, class) pairs of image 0 above ``conf_thres`` (objectness and objectness × class): NMS's input."""
    x = pred[0][pred[0][:, 4] > conf_thres]
    return int(((x[:, 5:] * x[:, 4:5]) > conf_thres).sum())


class StageRunner(Runner):
    """Times ready no-argument callables (the stages) under the model's runner: its session (threads,
    backend flags), synchronisation and clock, and its backend, precision and version in every row."""

    def __init__(self, inner: Runner):
        super().__init__(inner.threads, inner.channels_last)
        self.inner = inner
        self.backend = inner.backend
        self.device = inner.device

    @property
    def precision(self) -> str:
        return self.inner.precision

    def runtime_version(self) -> str:
        return self.inner.runtime_version()

    def compile_seconds(self, fn: Callable[[], Any]) -> float:
        return self.inner.compile_seconds(fn)

    def prepare(self, model: nn.Module | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        return model

    def sync(self) -> None:
        self.inner.sync()

    @contextlib.contextmanager
    def session(self) -> Iterator[Runner]:
        with self.inner.session():
            yield self

    def time_call(self, fn: Callable[[], Any], clock: Clock = time.perf_counter) -> float:
        return self.inner.time_call(fn, clock)


@dataclass
class PipelineProfile:
    """Per-stage latency of one frame (``table``: one row per stage, then ``end-to-end``).

    Columns: ``stage``, ``what`` (what the stage does), the shared measurement columns (``estimate_ms`` =
    ``estimator`` over per-call samples with ``ci_low_ms``/``ci_high_ms``, ``median_ms``, ``p90_ms``,
    ``iqr_ms``, ``cv``, ``n``, ``backend``, ``precision``, ...), ``share`` (estimate / sum of the stage
    estimates; the stages sum to 1), ``of_e2e`` (estimate / end-to-end estimate), and the NMS settings and
    load: ``conf_thres``, ``iou_thres``, ``boxes_in`` (box-class pairs above ``conf_thres``: NMS's input)
    and ``detections`` (kept).
    """

    name: str
    imgsz: int
    frame_hw: tuple[int, int]
    table: pd.DataFrame
    estimator: str
    rounds: int
    conf_thres: float
    iou_thres: float
    boxes_in: int
    detections: int
    warnings: list[str] = field(default_factory=list)

    @property
    def stage_sum_over_e2e(self) -> float:
        return float(self.table.loc[self.table["stage"] != E2E, "of_e2e"].sum())

    def summary(self) -> str:
        return (f"{self.boxes_in} box-class pairs above conf {self.conf_thres:g} reach NMS (IoU "
                f"{self.iou_thres:g}), {self.detections} kept; sum of stages / end-to-end = "
                f"{self.stage_sum_over_e2e:.2f} ({self.estimator}, {self.rounds} interleaved rounds)")

    def meta(self) -> dict[str, Any]:
        return {"model": self.name, "imgsz": self.imgsz, "frame_hw": list(self.frame_hw),
                "estimator": self.estimator, "rounds": self.rounds, "conf_thres": self.conf_thres,
                "iou_thres": self.iou_thres, "boxes_in": self.boxes_in, "detections": self.detections,
                "stage_sum_over_e2e": self.stage_sum_over_e2e, "speed_reference": False,
                "warnings": self.warnings}


def profile_pipeline(cfg: Any, *, imgsz: int | None = None, frame: np.ndarray | torch.Tensor | None = None,
                     backend: str = "torch", device: str = "cpu", threads: int = 1,
                     conf_thres: float = VAL_CONF, iou_thres: float = VAL_IOU,
                     estimator: str = DEFAULT_ESTIMATOR, budget_s: float = 10.0, channels_last: bool = False,
                     progress: bool = True) -> PipelineProfile:
    """Time letterbox + model + NMS of ``frame`` (default :func:`example_frame`) for detector ``cfg`` (any
    form of :mod:`latlab.ops.sources`) under ``backend``; see ``latlab profile --pipeline``."""
    check_estimator(estimator)
    check_threshold(conf_thres, "--conf")
    check_threshold(iou_thres, "iou_thres")
    resolved = resolve_model(cfg)
    backend, notes = timing_backend(backend, resolved)
    runner = get_runner(backend, device, threads=threads, channels_last=channels_last)
    size, random_input = model_input(resolved, imgsz)
    if random_input.shape[1] != 3:
        raise ConfigError(f"'{resolved.name}' takes {random_input.shape[1]} input channels: --pipeline "
                          "letterboxes RGB frames (3 channels)")
    img = example_frame() if frame is None else frame
    x = preprocess(img, size)

    model_fn = runner.prepare(resolved.model, x)
    with runner.session():
        pred = model_prediction(model_fn())
    if pred.dim() != 3 or pred.shape[-1] < 6:
        raise ConfigError(f"'{resolved.name}': --pipeline needs a detector whose output is [batch, boxes, "
                          f"5 + classes] (YOLOv5 Detect in eval mode); its output is {tuple(pred.shape)}")
    detections = non_max_suppression(pred, conf_thres, iou_thres)

    def pre() -> torch.Tensor:
        with torch.inference_mode():
            return preprocess(img, size)

    def post() -> list[torch.Tensor]:
        with torch.inference_mode():
            return non_max_suppression(pred, conf_thres, iou_thres)

    def end_to_end() -> list[torch.Tensor]:
        with torch.inference_mode():
            preprocess(img, size)
            return non_max_suppression(model_prediction(model_fn()), conf_thres, iou_thres)

    stages = {"preprocess": pre, "model": model_fn, "nms": post, E2E: end_to_end}
    run = run_interleaved(stages, None, budget_s=budget_s, estimator=estimator, runner=StageRunner(runner),
                          threads=threads, speed_reference=False, progress=progress)
    h, w = int(img.shape[0]), int(img.shape[1])
    what = {"preprocess": f"letterbox {w}×{h} uint8 → {size}×{size}, /255, [1, 3, {size}, {size}] float32",
            "model": f"{runner.backend} forward on {runner.device} (the Detect head's decode included)",
            "nms": f"obj × cls > {conf_thres:g}, xywh → xyxy, class-aware NMS IoU {iou_thres:g}",
            E2E: "preprocess + model + nms back to back"}
    boxes_in, kept = nms_candidates(pred, conf_thres), len(detections[0])
    if boxes_in == 0:
        notes.append(f"no box of '{resolved.name}' passes conf {conf_thres:g} on this frame (untrained weights?): "
                     "the nms stage times the confidence filter alone; profile a trained model for a real NMS load")
    e2e_ms = run.measurements[E2E].estimate_ms
    stage_sum = sum(run.measurements[s].estimate_ms for s in STAGES)
    rows = [{"stage": s, "what": what[s], **run.measurements[s].to_row(),
             "share": run.measurements[s].estimate_ms / stage_sum if s != E2E else np.nan,
             "of_e2e": run.measurements[s].estimate_ms / e2e_ms, "conf_thres": conf_thres,
             "iou_thres": iou_thres, "boxes_in": boxes_in, "detections": kept} for s in (*STAGES, E2E)]
    return PipelineProfile(resolved.name, size, (h, w), pd.DataFrame(rows), estimator, run.rounds, conf_thres,
                           iou_thres, boxes_in, kept, list(dict.fromkeys(notes + run.warnings)))
