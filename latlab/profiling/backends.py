"""Inference backends: a registry of runners that turn (model, example input) into a no-argument callable.

A ``Runner`` hides how a backend executes and synchronises, so the timer and the interleaved comparison
time every backend the same way. Each backend is one ``Runner`` subclass registered with
``@register_backend(name, devices=..., description=...)``; its :class:`BackendSpec` (name, devices,
optional extra, precision, per-layer support, one-line description) is all the CLI options, help texts
and error messages need, so adding a backend is one class (``get_runner`` / ``list_backends`` find it):

- ``torch`` (``TorchCPURunner``; ``CUDARunner`` on ``cuda``): PyTorch eager, ``eval()`` +
  ``torch.inference_mode``, optional channels_last; on CPU glibc malloc fixed in its steady state first
  (``latlab.profiling.allocator`` says why); on CUDA ``cudnn.benchmark`` on, each call timed with CUDA events.
- ``onnxruntime`` (``ORTRunner``): ONNX Runtime (an ONNX file as it is, a module exported with
  ``torch.onnx.export`` to a temporary file),
  sequential execution, ``intra_op_num_threads = threads``, ``inter_op_num_threads = 1``.

More runtimes (``torch-compile``, ``onnxruntime-int8``, ``openvino``, ``openvino-int8``) register themselves in
``latlab.profiling.runtimes``, one module each. A runner records its precision, its runtime's version and the
seconds a conversion took (compile, quantization: ``compile_seconds``), never mixed into the latency.

Thread counts are always set explicitly (``torch.set_num_threads`` inside ``runner.session()``, restored on
exit; ORT's intra-op pool at session creation) and recorded, because a latency means nothing without them.
The model handed in is never mutated: runners work on a deep copy.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.metadata
import math
import tempfile
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from latlab.errors import DeviceError
from latlab.ops.sources import OnnxGraph
from latlab.profiling.allocator import steady_cpu_allocator
from latlab.threads import torch_threads

Clock = Callable[[], float]


def call_with(fn: Callable[..., Any], example_input: Any) -> Any:
    """Call ``fn`` on ``example_input``: a tuple is spread as positional args; a tensor or list is one arg.

    A list stays one argument because multi-input YAML layers (Concat, Detect) take a list of tensors;
    ``None`` means the callable takes no arguments.
    """
    if example_input is None:
        return fn()
    if isinstance(example_input, tuple):
        return fn(*example_input)
    return fn(example_input)


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor of a (nested) tuple/list/dict structure."""
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple):
        return tuple(map_tensors(o, fn) for o in obj)
    if isinstance(obj, list):
        return [map_tensors(o, fn) for o in obj]
    if isinstance(obj, dict):
        return {k: map_tensors(v, fn) for k, v in obj.items()}
    return obj


def flatten_tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors of a nested structure in depth-first order (the order torch.onnx.export flattens in)."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (tuple, list)):
        return [t for o in obj for t in flatten_tensors(o)]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in flatten_tensors(v)]
    return []


def _to_channels_last(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t


def _private_copy(model: nn.Module) -> nn.Module:
    """A deep copy in eval mode, so timing never changes the caller's model (mode, device, layout)."""
    try:
        m = copy.deepcopy(model)
    except Exception:
        m = model
    return m.eval()


class Runner(ABC):
    """One backend + device + thread count. ``prepare`` once, then call the returned function many times.

    Call the prepared function (and ``time_call``) inside ``with runner.session():`` so the thread count
    (and backend flags such as cudnn.benchmark) are in force; the session restores them on exit.
    """

    backend: str = "torch"
    device: str = "cpu"
    spec: ClassVar[BackendSpec | None] = None  # set by @register_backend

    def __init__(self, threads: int = 1, channels_last: bool = False):
        if threads < 1:
            raise DeviceError(f"threads must be >= 1, got {threads}")
        self.threads = int(threads)
        self.channels_last = bool(channels_last)
        self._compile_s: dict[int, float] = {}

    @property
    def precision(self) -> str:
        """The numeric precision this backend times in (``fp32``, ``int8``, ...), from its spec."""
        return self.spec.precision if self.spec else "fp32"

    def runtime_version(self) -> str:
        """``"<runtime> <version>"`` of the package that executes the model (recorded with every result)."""
        return self.spec.runtime_version() if self.spec else f"torch {torch.__version__}"

    def record_compile(self, fn: Callable[[], Any], seconds: float) -> None:
        """Remember how long turning a model into ``fn`` took (compile, quantization), apart from latency."""
        self._compile_s[id(fn)] = float(seconds)

    def compile_seconds(self, fn: Callable[[], Any]) -> float:
        """Seconds spent preparing ``fn`` beyond an eager copy (NaN for a backend that converts nothing)."""
        return self._compile_s.get(id(fn), math.nan)

    @classmethod
    def create(cls, device: str, *, threads: int = 1, channels_last: bool = False) -> Runner:
        """The runner of this backend on ``device`` (already checked against the spec's devices).
        Default: the class itself runs on one device; a backend with a class per device overrides this."""
        return cls(threads, channels_last)

    @abstractmethod
    def prepare(self, model: nn.Module | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        """Return a no-argument callable that runs one inference of ``model`` on ``example_input``."""

    def sync(self) -> None:
        """Block until all queued work of this device is done (a no-op on CPU)."""
        return None

    @contextlib.contextmanager
    def session(self) -> Iterator[Runner]:
        """Set the thread count for the duration of a measurement and restore the previous one after."""
        with torch_threads(self.threads):
            yield self

    def _eager_run(self, model: nn.Module | Callable[..., Any], example_input: Any,
                   device: str | None = None) -> Callable[[], Any]:
        """A no-argument eager-mode call on a private copy of ``model`` (on ``device``, channels_last if set)."""
        x = example_input if device is None else map_tensors(example_input, lambda t: t.to(device))
        if isinstance(model, nn.Module):
            model = _private_copy(model)
            if device is not None:
                model = model.to(device)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
                x = map_tensors(x, _to_channels_last)
        fn = model

        def run() -> Any:
            with torch.inference_mode():
                return call_with(fn, x)

        return run

    def time_call(self, fn: Callable[[], Any], clock: Clock = time.perf_counter) -> float:
        """Run ``fn`` once and return its duration in milliseconds."""
        self.sync()
        t0 = clock()
        fn()
        self.sync()
        return (clock() - t0) * 1e3


@dataclass(frozen=True)
class BackendSpec:
    """What latlab knows about one backend without creating it: its name (``--backend``), the devices it
    runs on, the pip extra and importable modules it needs, the precision it times in, whether it can
    time single torch layers (``--per-layer``/``--ops``, ``lint --measure``), a one-line description and
    the module whose version every result records (``runtime``)."""

    name: str
    runner: type[Runner]
    devices: tuple[str, ...]
    description: str
    extra: str | None = None
    requires: tuple[str, ...] = ()
    precision: str = "fp32"
    per_layer: bool = False
    runtime: str = "torch"

    def runtime_version(self) -> str:
        """``"<runtime> <version>"``: the importable module ``runtime`` and its ``__version__``."""
        try:
            module = importlib.import_module(self.runtime)  # optional dependency: already imported by the runner
        except ImportError:
            return f"{self.runtime} (not installed)"
        found = getattr(module, "__version__", None)
        if found is None:
            with contextlib.suppress(importlib.metadata.PackageNotFoundError):
                found = importlib.metadata.version(self.runtime)
        return f"{self.runtime} {found or '?'}"

    def help(self) -> str:
        """One line for ``--help``: ``name (devices[; pip install latlab[extra]]): description``."""
        need = f"; pip install latlab[{self.extra}]" if self.extra else ""
        return f"{self.name} ({', '.join(self.devices)}{need}): {self.description.rstrip('.')}"

    def check_installed(self) -> None:
        """Raise a one-line DeviceError naming the pip extra when a required module cannot be imported."""
        for module in self.requires:
            try:
                __import__(module)  # optional dependency: only the backend asked for needs it
            except ImportError as exc:
                hint = f"pip install latlab[{self.extra}]" if self.extra else f"pip install {module}"
                what = f"the {self.extra} extra" if self.extra else module
                raise DeviceError(f"--backend {self.name} needs {what} ({' and '.join(self.requires)}): "
                                  f"{hint} ({exc.name or module} is not installed)") from None


_REGISTRY: dict[str, BackendSpec] = {}


def register_backend(name: str, *, devices: tuple[str, ...], description: str, extra: str | None = None,
                     requires: tuple[str, ...] = (), precision: str = "fp32", per_layer: bool = False,
                     runtime: str = "torch") -> Callable[[type[Runner]], type[Runner]]:
    """Class decorator: register a ``Runner`` subclass as backend ``name`` (sets its ``backend`` and
    ``spec``). A name can be registered once; ``unregister_backend`` removes it (tests)."""

    def decorate(cls: type[Runner]) -> type[Runner]:
        if name in _REGISTRY:
            raise DeviceError(f"backend '{name}' is already registered ({_REGISTRY[name].runner.__name__})")
        if not devices:
            raise DeviceError(f"backend '{name}' must name at least one device")
        spec = BackendSpec(name, cls, tuple(devices), description, extra, tuple(requires), precision, per_layer,
                           runtime)
        cls.backend = name
        cls.spec = spec
        _REGISTRY[name] = spec
        return cls

    return decorate


def unregister_backend(name: str) -> None:
    """Remove backend ``name`` from the registry (for tests that register a toy backend)."""
    get_backend(name)
    del _REGISTRY[name]


def list_backends() -> list[BackendSpec]:
    """The registered backends, in registration order."""
    return list(_REGISTRY.values())


def backend_names() -> tuple[str, ...]:
    """The registered backend names (``--backend`` choices)."""
    return tuple(_REGISTRY)


def device_names() -> tuple[str, ...]:
    """Every device some registered backend runs on (``--device`` choices)."""
    return tuple(dict.fromkeys(d for spec in _REGISTRY.values() for d in spec.devices))


def get_backend(name: str) -> BackendSpec:
    """The spec of backend ``name``; a one-line DeviceError naming the registered backends otherwise."""
    spec = _REGISTRY.get(name)
    if spec is None:
        raise DeviceError(f"unknown backend '{name}': expected one of {', '.join(_REGISTRY)}")
    return spec


def per_layer_backends() -> tuple[str, ...]:
    """Backends that can time single torch layers (``profile --per-layer``/``--ops``, ``lint --measure``)."""
    return tuple(s.name for s in _REGISTRY.values() if s.per_layer)


def require_per_layer(backend: str) -> None:
    """Raise a one-line DeviceError unless ``backend`` can time single torch layers."""
    if not get_backend(backend).per_layer:
        raise DeviceError(f"--per-layer/--ops time torch modules; they do not support --backend {backend} "
                          f"(backends that do: {', '.join(per_layer_backends())})")


@register_backend("torch", devices=("cpu", "cuda"), per_layer=True,
                  description="PyTorch eager (inference_mode; cudnn.benchmark on cuda).")
class TorchCPURunner(Runner):
    """PyTorch eager mode on the CPU, with glibc malloc in its steady state (see ``allocator``).
    Registered as backend ``torch``; ``create("cuda")`` returns a :class:`CUDARunner`."""

    device = "cpu"

    @classmethod
    def create(cls, device: str, *, threads: int = 1, channels_last: bool = False) -> Runner:
        if device == "cuda":
            return CUDARunner(threads, channels_last)
        return cls(threads, channels_last)

    @contextlib.contextmanager
    def session(self) -> Iterator[Runner]:
        steady_cpu_allocator()
        with super().session():
            yield self

    def prepare(self, model: nn.Module | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        return self._eager_run(model, example_input)


def cuda_available() -> bool:
    return torch.cuda.is_available() and torch.cuda.device_count() > 0


def require_cuda() -> None:
    """Raise a one-line DeviceError when no CUDA GPU can be used."""
    if not cuda_available():
        raise DeviceError("--device cuda asked but no CUDA GPU is available (torch.cuda.is_available() is False)")


class CUDARunner(Runner):
    """PyTorch eager mode on a CUDA GPU; each call is timed with CUDA events after a synchronize."""

    backend = "torch"
    device = "cuda"

    def __init__(self, threads: int = 1, channels_last: bool = False):
        require_cuda()
        super().__init__(threads, channels_last)

    def prepare(self, model: nn.Module | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        return self._eager_run(model, example_input, device="cuda")

    def sync(self) -> None:
        torch.cuda.synchronize()

    @contextlib.contextmanager
    def session(self) -> Iterator[Runner]:
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            with super().session():
                yield self
        finally:
            torch.backends.cudnn.benchmark = previous

    def time_call(self, fn: Callable[[], Any], clock: Clock = time.perf_counter) -> float:
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        fn()
        end.record()
        end.synchronize()
        return float(start.elapsed_time(end))


def export_onnx(model: nn.Module, example_input: Any, path: Path | str, opset: int = 17) -> Path:
    """Export ``model`` to ONNX. Uses the TorchScript exporter (``dynamo=False``), which needs no onnxscript
    and is still shipped by torch 2.13; falls back to the dynamo exporter when the legacy one is gone."""
    args = example_input if isinstance(example_input, tuple) else (example_input,)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset,
                              do_constant_folding=True)
        except TypeError:
            torch.onnx.export(model, args, str(path), opset_version=opset)
    return path


class OnnxFiles:
    """The ONNX files a runner times: an ONNX graph's own file, or an nn.Module exported once into a
    temporary folder that lives as long as the runner (ONNX Runtime and OpenVINO both start from these)."""

    def __init__(self, backend: str):
        self.backend = backend
        self._tmp = tempfile.TemporaryDirectory(prefix=f"latlab-{backend}-")
        self._exported = 0

    def file(self, model: nn.Module | OnnxGraph | Callable[..., Any], example_input: Any) -> Path:
        if isinstance(model, OnnxGraph):
            return model.path
        if isinstance(model, nn.Module):
            self._exported += 1
            path = Path(self._tmp.name) / f"model{self._exported}.onnx"
            return export_onnx(_private_copy(model), example_input, path)
        raise DeviceError(f"--backend {self.backend} needs an nn.Module to export, got a plain callable")


@register_backend("onnxruntime", devices=("cpu", "cuda"), extra="onnx", requires=("onnx", "onnxruntime"),
                  runtime="onnxruntime", description="ONNX Runtime on an ONNX export (CUDA needs onnxruntime-gpu).")
class ORTRunner(Runner):
    """ONNX Runtime on the CPU (or CUDA when onnxruntime-gpu provides the CUDA execution provider)."""

    @classmethod
    def create(cls, device: str, *, threads: int = 1, channels_last: bool = False) -> Runner:
        return cls(threads, channels_last, device=device)

    def __init__(self, threads: int = 1, channels_last: bool = False, device: str = "cpu"):
        get_backend(self.backend).check_installed()  # one-line error naming the extra
        import onnxruntime  # optional dependency (the onnx extra)

        self._ort = onnxruntime
        if device == "cuda":
            require_cuda()
            if "CUDAExecutionProvider" not in self._ort.get_available_providers():
                raise DeviceError("--backend onnxruntime --device cuda needs onnxruntime-gpu "
                                  "(CUDAExecutionProvider is not available)")
        super().__init__(threads, channels_last)
        self.device = device
        self._files = OnnxFiles(self.backend)
        self.model_path: Path | None = None

    def onnx_file(self, model: nn.Module | OnnxGraph | Callable[..., Any], example_input: Any) -> Path:
        """The ONNX file of ``model`` (see :class:`OnnxFiles`)."""
        return self._files.file(model, example_input)

    def prepare(self, model: nn.Module | OnnxGraph | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        """An ONNX file runs as it is; an nn.Module is exported to a temporary ONNX file first."""
        self.model_path = self.onnx_file(model, example_input)
        return self.session_run(self.model_path, example_input)

    def session_run(self, path: Path, example_input: Any) -> Callable[[], Any]:
        """A no-argument call of an ONNX Runtime session on ``path`` fed with ``example_input``."""
        so = self._ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self._ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self._ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        providers = ["CUDAExecutionProvider"] if self.device == "cuda" else ["CPUExecutionProvider"]
        sess = self._ort.InferenceSession(str(path), sess_options=so, providers=providers)
        names = [i.name for i in sess.get_inputs()]
        arrays = [t.detach().cpu().numpy() for t in flatten_tensors(example_input)]
        if len(names) != len(arrays):
            raise DeviceError(f"ONNX export produced {len(names)} inputs but the example input has "
                              f"{len(arrays)} tensors")
        feeds = dict(zip(names, arrays, strict=True))
        self.ort_session = sess

        def run() -> Any:
            return sess.run(None, feeds)

        return run

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()


def get_runner(backend: str = "torch", device: str = "cpu", *, threads: int = 1,
               channels_last: bool = False) -> Runner:
    """The runner for registered ``backend`` on ``device``; a one-line DeviceError for an unknown backend,
    an unknown or unsupported device, or a missing optional dependency."""
    spec = get_backend(backend)
    if device not in spec.devices:
        if device not in device_names():
            raise DeviceError(f"unknown device '{device}': expected one of {', '.join(device_names())}")
        raise DeviceError(f"--backend {backend} does not run on --device {device}: "
                          f"it supports {', '.join(spec.devices)}")
    spec.check_installed()
    return spec.runner.create(device, threads=threads, channels_last=channels_last)


def __getattr__(name: str) -> tuple[str, ...]:
    """``BACKENDS`` and ``DEVICES``: the registered names, read from the registry when asked for."""
    if name == "BACKENDS":
        return backend_names()
    if name == "DEVICES":
        return device_names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
