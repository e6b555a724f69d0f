"""What a search trial measures: latency (timed here or predicted from a table), counts, and mAP.

- :class:`MeasuredLatency` times a built model on a registered backend (``--backend``, default eager
  torch) with the profiling core's interleaved engine (``run_interleaved``: one input of ``1×3×imgsz×imgsz``, fixed thread count, low-percentile estimator with a
  95 % CI, median beside it, latency at the machine's reference speed so trials timed an hour apart
  compare). A :class:`TimingLock` (``fcntl`` on a host-wide file per device) makes sure two search workers
  on one host never time on one device at the same moment. CPU training may overlap CPU timing; a GPU is
  timed only while no worker trains on it (trainers hold the GPU's lock shared, timing holds it exclusive).
- ``lut:FILE`` latency comes from a :class:`LatencyPredictor` (the latency-table work implements it as
  ``latlab.lut.load_predictor(path)``).
- :func:`count_candidate` stores ``params``, ``madds``, ``flops`` and ``mac_bytes`` from the counter.
- :class:`TrainedAccuracy` trains the candidate with the detection harness for a per-trial epoch or
  minute budget and returns mAP50-95 and mAP50; an ``on_epoch_end`` hook lets the study prune. With an
  ``accuracy_backend`` (``--accuracy-backend onnxruntime-int8``) the final EMA weights are also scored through
  that backend (``latlab.detection.converted``): the trial's mAP is the converted model's, the FP32 one is kept.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from latlab.detection.converted import EAGER, evaluate_backend
from latlab.detection.data import DetectionData, load_dataset
from latlab.detection.device import parse_device
from latlab.detection.synthetic import PRESETS
from latlab.detection.train import train
from latlab.errors import SearchError
from latlab.inputs import example_input
from latlab.lut.predict import LatencyPredictor as TablePredictor
from latlab.profiling.backends import get_backend
from latlab.profiling.compare import run_interleaved
from latlab.profiling.counter import count_model
from latlab.validate import positive_int

DEFAULT_LOCK = Path(tempfile.gettempdir()) / "latlab-timing.lock"


@dataclass
class LatencyEstimate:
    """A latency in ms with the statistic named: ``estimate_ms`` of ``estimator`` and its 95 % CI."""

    estimate_ms: float
    ci_low_ms: float
    ci_high_ms: float
    median_ms: float
    estimator: str
    source: str
    threads: int
    device: str
    n: int = 0
    warnings: list[str] = field(default_factory=list)
    backend: str = "torch"

    def attrs(self) -> dict[str, Any]:
        """Trial user attributes (the shared latency columns of the trials table)."""
        return {"latency_ms": self.estimate_ms, "latency_ci_low_ms": self.ci_low_ms,
                "latency_ci_high_ms": self.ci_high_ms, "latency_median_ms": self.median_ms,
                "latency_estimator": self.estimator, "latency_source": self.source, "threads": self.threads,
                "latency_device": self.device, "latency_backend": self.backend, "latency_n": self.n,
                "latency_warnings": "; ".join(self.warnings)}


@runtime_checkable
class LatencyPredictor(Protocol):
    """What the search needs from a latency table (``latlab.lut.predict.LatencyPredictor`` provides it):
    ``predict(model_or_cfg)`` → latency in ms, ``identity()`` → what a study records about the table
    (``sha256``, ``estimator``, ``threads``, ``device_key``, ...)."""

    def predict(self, model: Any) -> float: ...

    def identity(self) -> dict[str, Any]: ...


def load_lut_predictor(path: str | Path, *, imgsz: int, threads: int | None = None) -> LatencyPredictor:
    """Open a latency table as a predictor (``latlab.lut.predict.LatencyPredictor``), checked for ``imgsz``."""
    p = Path(path)
    if not p.exists():
        raise SearchError(f"--latency lut:{path}: latency table file not found")
    predictor = TablePredictor(p, threads=threads, imgsz=imgsz)
    if not isinstance(predictor, LatencyPredictor):
        raise SearchError(f"--latency lut:{path}: {type(predictor).__name__} lacks predict() and identity()")
    return predictor


class TimingLock:
    """Host-wide lock (``fcntl.flock``) of one device: held exclusively while a worker times a model on it,
    shared while a worker trains on it (GPUs; see the module docstring).

    The CPU's path is ``$LATLAB_TIMING_LOCK`` or ``<tmp>/latlab-timing.lock``; a GPU's is that path with the
    GPU's key appended (``latlab-timing-cuda-<uuid>.lock``). Every worker on a host must use the same files.
    """

    def __init__(self, path: str | Path | None = None, device: str = "cpu"):
        base = Path(path or os.environ.get("LATLAB_TIMING_LOCK") or DEFAULT_LOCK)
        key = parse_device(device, "off").lock_key
        self.path = base if key == "cpu" else base.with_name(f"{base.stem}-{key}{base.suffix}")

    @contextlib.contextmanager
    def _flock(self, mode: int) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+") as fh:
            fcntl.flock(fh.fileno(), mode)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def hold(self) -> contextlib.AbstractContextManager[None]:
        """Exclusive: time on this device (waits for other timings and for trainings on it)."""
        return self._flock(fcntl.LOCK_EX)

    def training(self) -> contextlib.AbstractContextManager[None]:
        """Shared: train on this device (several trainings may overlap; a timing waits for them)."""
        return self._flock(fcntl.LOCK_SH)


class MeasuredLatency:
    """Times models on this host with the profiling core on ``backend`` (a registered backend name;
    ``latlab.profiling.backends``) and ``device``; see the module docstring."""

    def __init__(self, imgsz: int, *, device: str = "cpu", threads: int = 1, estimator: str = "p10",
                 target_ci: float = 0.03, min_rounds: int = 40, max_time_s: float = 5.0,
                 lock: TimingLock | None = None, backend: str = "torch"):
        get_backend(backend)  # an unknown name fails before any training, listing the registered backends
        self.imgsz, self.device, self.threads, self.backend = imgsz, device, threads, backend
        self.estimator, self.target_ci = estimator, target_ci
        self.min_rounds, self.max_time_s = min_rounds, max_time_s
        self.lock = lock or TimingLock(device=device)
        self.source = "measured"

    def __call__(self, model: nn.Module, cfg: dict[str, Any] | None = None) -> LatencyEstimate:
        x = example_input(self.imgsz)
        with self.lock.hold(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run = run_interleaved({"candidate": model}, x, budget_s=self.max_time_s, min_rounds=self.min_rounds,
                                  target_ci=self.target_ci, estimator=self.estimator, backend=self.backend,
                                  device=self.device, threads=self.threads, progress=False)
            m = run.measurements["candidate"]
        notes = list(dict.fromkeys([*m.warnings, *(str(w.message) for w in caught)]))
        return LatencyEstimate(m.estimate_ms, m.ci_low_ms, m.ci_high_ms, m.median_ms, m.estimator, self.source,
                               m.threads, m.device, m.n, notes, m.backend)


class PredictedLatency:
    """Latency from a :class:`LatencyPredictor` (``--latency lut:FILE``): the table's calibrated estimate,
    with no confidence interval of its own (CI columns repeat the estimate)."""

    def __init__(self, predictor: LatencyPredictor, source: str, device: str = "cpu"):
        self.predictor, self.source, self.device = predictor, source, device
        ident = predictor.identity()
        self.estimator = str(ident.get("estimator") or "table")
        self.threads = int(ident.get("threads") or 0)
        self.backend = str(ident.get("backend") or "")

    def __call__(self, model: nn.Module, cfg: dict[str, Any] | None = None) -> LatencyEstimate:
        ms = float(self.predictor.predict(model))
        return LatencyEstimate(ms, ms, ms, ms, self.estimator, self.source, self.threads, self.device,
                               backend=self.backend)


LatencyFn = Callable[[nn.Module, dict[str, Any] | None], LatencyEstimate]


def parse_latency_source(text: str) -> tuple[str, Path | None]:
    """``"measured"`` → ("measured", None); ``"lut:FILE"`` → ("lut", FILE)."""
    if text == "measured":
        return "measured", None
    if text.startswith("lut:") and len(text) > 4:
        return "lut", Path(text[4:])
    raise SearchError(f"--latency {text!r}: expected 'measured' or 'lut:FILE'")


def count_candidate(model: nn.Module, imgsz: int) -> dict[str, int]:
    """``params``, ``madds``, ``flops``, ``mac_bytes`` of one ``1×3×imgsz×imgsz`` forward (meta tensors)."""
    totals = count_model(model, imgsz=imgsz).totals
    return {k: int(totals[k]) for k in ("params", "madds", "flops", "mac_bytes")}


@dataclass
class AccuracyResult:
    """mAP of one short training; ``pruned`` when the epoch hook stopped it. ``map``/``map50`` are the
    accuracy backend's (eager torch FP32 unless another was asked for); ``fp32_map``/``fp32_map50`` eager
    torch's, ``backend``/``precision``/``runtime`` what scored ``map``."""

    map50: float
    map: float
    epochs: int
    train_s: float
    stopped_by: str
    pruned: bool = False
    fp32_map: float = float("nan")
    fp32_map50: float = float("nan")
    backend: str = EAGER
    precision: str = "fp32"
    runtime: str = ""

    def details(self) -> dict[str, Any]:
        """The trial attributes that say how ``map`` was scored (FP32 mAP beside a converted model's)."""
        if self.backend == EAGER:
            return {}
        return {"map_fp32": self.fp32_map, "map50_fp32": self.fp32_map50, "accuracy_backend": self.backend,
                "accuracy_precision": self.precision, "accuracy_runtime": self.runtime}


EpochHook = Callable[[int, dict[str, Any]], bool]

_DATASETS: dict[tuple[str, str, int], DetectionData] = {}


def builtin_data_kwargs(data: str | Path, preset: str | None = None, n_train: int | None = None,
                        n_val: int | None = None) -> dict[str, Any]:
    """The built-in data's options (``search run --preset/--n-train/--n-val``) as :func:`search_dataset`'s
    ``data_kwargs``; an unknown preset, a count below 1, or any of them with a user's dataset is a
    ``SearchError`` naming the option."""
    given = {k: v for k, v in (("preset", preset), ("n_train", n_train), ("n_val", n_val)) if v is not None}
    if given and str(data) != "builtin":
        flags = ", ".join("--" + k.replace("_", "-") for k in given)
        raise SearchError(f"{flags}: only for the built-in data (--data builtin), not --data {data}")
    for k in ("n_train", "n_val"):
        if k in given:
            positive_int(given[k], "--" + k.replace("_", "-"), error=SearchError)
    if preset is not None and preset not in PRESETS:
        raise SearchError(f"--preset {preset!r}: expected one of {', '.join(sorted(PRESETS))}")
    return given


def search_dataset(data: str | Path, data_kwargs: dict[str, Any] | None = None, imgsz: int = 160
                   ) -> DetectionData:
    """``data`` loaded once per process and (data, kwargs, imgsz): the built-in set generated at ``imgsz``
    unless ``data_kwargs`` says otherwise. Training, the proxies, the supernet and the reference trainings of
    one process all read this one copy."""
    kwargs = dict(data_kwargs or {})
    key = (str(data), json.dumps(kwargs, sort_keys=True, default=str), imgsz)
    if key not in _DATASETS:
        if str(data) == "builtin":
            kwargs.setdefault("imgsz", imgsz)
        _DATASETS[key] = load_dataset(data, **kwargs)
    return _DATASETS[key]


class TrainedAccuracy:
    """Short training on the built-in dataset (or a user's data) with an epoch or minute budget.

    The dataset is loaded once and reused for every trial. ``keep_weights=False`` deletes the trial's
    checkpoints after training (metrics.csv, final.json and meta.json stay).
    """

    def __init__(self, *, data: str | Path = "builtin", imgsz: int = 160, epochs: int | None = None,
                 minutes: float | None = None, batch: int = 16, seed: int = 0,
                 data_kwargs: dict[str, Any] | None = None, keep_weights: bool = False,
                 val_max_images: int | None = None, device: str = "cpu", amp: str = "auto",
                 accuracy_backend: str = EAGER, backend_threads: int = 1):
        if epochs is None and minutes is None:
            epochs = 3
        if epochs is not None and minutes is not None:
            raise SearchError("give a per-trial training budget in epochs or minutes, not both")
        if (epochs is not None and epochs < 1) or (minutes is not None and minutes <= 0):
            raise SearchError(f"per-trial training budget must be positive (epochs={epochs}, minutes={minutes})")
        self.data, self.imgsz, self.epochs, self.minutes = data, imgsz, epochs, minutes
        self.batch, self.seed, self.keep_weights = batch, seed, keep_weights
        self.data_kwargs = dict(data_kwargs or {})
        self.val_max_images = val_max_images
        self.device, self.amp = device, amp
        self.accuracy_backend, self.backend_threads = accuracy_backend, backend_threads

    @property
    def dataset(self) -> DetectionData:
        """The training data (loaded on first use, shared within the process: :func:`search_dataset`)."""
        return search_dataset(self.data, self.data_kwargs, self.imgsz)

    @property
    def nc(self) -> int:
        return int(self.dataset.nc)

    def budget(self) -> dict[str, Any]:
        """What decides a trial's mAP besides the model (recorded in the study; joiners must match it).
        ``data_kwargs`` (built-in data size, preset) and ``accuracy_backend`` only when given, so older studies
        still join."""
        out = {"epochs": self.epochs, "minutes": self.minutes, "batch": self.batch, "imgsz": self.imgsz,
               "data": str(self.data), "seed": self.seed}
        if self.data_kwargs:
            out["data_kwargs"] = dict(sorted(self.data_kwargs.items()))
        if self.accuracy_backend != EAGER:
            out["accuracy_backend"] = self.accuracy_backend
        return out

    def __call__(self, cfg: dict[str, Any], out_dir: Path, on_epoch_end: EpochHook | None = None
                 ) -> AccuracyResult:
        res = train(cfg, data=self.dataset, epochs=self.epochs, minutes=self.minutes, imgsz=self.imgsz,
                    batch=self.batch, out_dir=out_dir, seed=self.seed, on_epoch_end=on_epoch_end,
                    progress=False, val_max_images=self.val_max_images, device=self.device, amp=self.amp)
        if not self.keep_weights:
            for name in ("last.pt", "best.pt"):
                with contextlib.suppress(OSError):
                    (Path(out_dir) / name).unlink()
        out = AccuracyResult(float(res.map50), float(res.map), int(res.epochs), float(res.train_s),
                             res.stopped_by, pruned=res.stopped_by == "callback", fp32_map=float(res.map),
                             fp32_map50=float(res.map50), runtime=f"torch {torch.__version__}")
        if self.accuracy_backend == EAGER or out.pruned:
            return out
        m = evaluate_backend(res.model, self.dataset, self.accuracy_backend, imgsz=self.imgsz,
                             threads=self.backend_threads)
        return replace(out, map=float(m["map"]), map50=float(m["map50"]), backend=m["backend"],
                       precision=m["precision"], runtime=m["runtime"])


def remove_dir(path: Path) -> None:
    """Delete a trial folder left by an interrupted run before retrying it."""
    shutil.rmtree(path, ignore_errors=True)
