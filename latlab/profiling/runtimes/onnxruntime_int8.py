"""``onnxruntime-int8``: ONNX Runtime on a static INT8 quantization of the ONNX export.

ONNX Runtime's own tools (``onnxruntime.quantization.quantize_static``) write QDQ nodes (the recommended
format) with per-channel int8 weights, MinMax-calibrated on ``calibration.calibration_for`` (the built-in
detection images for an image batch). Activations are unsigned on x86-64 (U8S8, the format ONNX Runtime
recommends there) and signed elsewhere (S8S8, its default, the one ARM's kernels take): on x86-64 ORT fuses
S8S8 QDQ convolutions into no int8 kernel, so yolov5n kept 59 FP32 ``Conv`` between 648 Q/DQ nodes after
graph optimisation and ran 1.6-2× slower than the FP32 graph, while U8S8 gives 45 ``QLinearConv`` (stop 21,
``benchmarks/README.md``). The quantized file is cached per (FP32 export hash, calibration, format) in a temp
folder, so a model is quantized once per machine; the seconds quantization took (zero on a cache hit) are the
runner's ``compile_seconds``.
"""

from __future__ import annotations

import hashlib
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from latlab.ops.sources import OnnxGraph
from latlab.profiling.backends import ORTRunner, register_backend
from latlab.profiling.runtimes.calibration import Calibration, calibration_for

CACHE_DIR = Path(tempfile.gettempdir()) / "latlab-int8"
X86 = ("x86_64", "amd64", "i386", "i686")


def activation_format(machine: str | None = None) -> str:
    """``u8s8`` (unsigned activations, signed weights) on x86, ``s8s8`` elsewhere: see the module docstring."""
    return "u8s8" if (machine or platform.machine()).lower() in X86 else "s8s8"


def _graph_inputs(path: Path) -> list[str]:
    import onnx  # optional dependency (the onnx extra)

    proto = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in proto.graph.initializer}
    return [i.name for i in proto.graph.input if i.name not in initializers]


class _Reader:
    """An ``onnxruntime.quantization.CalibrationDataReader`` (it checks for ``get_next`` only): one feed dict
    per calibration step."""

    def __init__(self, names: list[str], calibration: Calibration):
        self._feeds = iter([dict(zip(names, arrays, strict=True)) for arrays in calibration.batches])

    def get_next(self) -> dict[str, Any] | None:
        return next(self._feeds, None)

    def __iter__(self) -> _Reader:
        return self

    def __next__(self) -> dict[str, Any]:
        feed = self.get_next()
        if feed is None:
            raise StopIteration
        return feed


def quantize_onnx(path: Path, example_input: Any, cache_dir: Path | None = None) -> Path:
    """The static QDQ INT8 version of ONNX file ``path``, cached in ``cache_dir`` (default ``CACHE_DIR``)."""
    from onnxruntime.quantization import (  # optional dependency (the onnx extra)
        QuantFormat,
        QuantType,
        quantize_static,
    )

    cache_dir = cache_dir or CACHE_DIR
    calibration = calibration_for(example_input)
    fmt = activation_format()
    key = hashlib.sha256(Path(path).read_bytes() + calibration.name.encode() + fmt.encode()).hexdigest()[:32]
    out = cache_dir / f"{key}.onnx"
    if out.is_file():
        return out
    cache_dir.mkdir(parents=True, exist_ok=True)
    reader = _Reader(_graph_inputs(path), calibration)
    tmp = out.with_name(f"{key}.{os.getpid()}.tmp.onnx")
    activations = QuantType.QUInt8 if fmt == "u8s8" else QuantType.QInt8
    quantize_static(str(path), str(tmp), reader, quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=activations, weight_type=QuantType.QInt8)
    os.replace(tmp, out)
    return out


@register_backend("onnxruntime-int8", devices=("cpu",), extra="onnx", requires=("onnx", "onnxruntime"),
                  precision="int8", runtime="onnxruntime",
                  description="ONNX Runtime on a static QDQ INT8 quantization (per-channel weights, calibrated "
                              "on the built-in images); quantization time recorded as compile_s.")
class ORTInt8Runner(ORTRunner):
    """ONNX Runtime on the CPU, on the quantized export (the FP32 export is quantized once and cached)."""

    def prepare(self, model: nn.Module | OnnxGraph | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        fp32 = self.onnx_file(model, example_input)
        t0 = time.perf_counter()
        self.model_path = quantize_onnx(fp32, example_input)
        seconds = time.perf_counter() - t0
        fn = self.session_run(self.model_path, example_input)
        self.record_compile(fn, seconds)
        return fn
