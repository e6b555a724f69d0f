"""``openvino`` (FP32) and ``openvino-int8`` (NNCF post-training quantization) on the CPU.

Both read the same ONNX export the ONNX Runtime backends time (an ONNX file as it is), then compile for the
CPU plugin with ``INFERENCE_NUM_THREADS = threads``, one stream, the latency hint and
``INFERENCE_PRECISION_HINT = f32``: without that hint OpenVINO runs bf16 on CPUs that have it, which is not
the FP32 this backend claims. ``openvino-int8`` quantizes the read model with ``nncf.quantize`` (default
mixed preset, calibrated on ``calibration.calibration_for``). Read + quantize + compile seconds are the
runner's ``compile_seconds``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from torch import nn

from latlab.errors import DeviceError
from latlab.ops.sources import OnnxGraph
from latlab.profiling.backends import (
    OnnxFiles,
    Runner,
    flatten_tensors,
    get_backend,
    register_backend,
)
from latlab.profiling.runtimes.calibration import calibration_for


def _nncf_quantize(ov_model: Any, example_input: Any) -> Any:
    import nncf  # optional dependency (the openvino extra)

    nncf.set_log_level(logging.ERROR)
    calibration = calibration_for(example_input)
    data = nncf.Dataset(calibration.batches, lambda arrays: arrays[0] if len(arrays) == 1 else tuple(arrays))
    return nncf.quantize(ov_model, data, subset_size=len(calibration.batches))


@register_backend("openvino", devices=("cpu",), extra="openvino", requires=("openvino",), runtime="openvino",
                  description="OpenVINO CPU plugin on the ONNX export, FP32 (precision hint f32).")
class OpenVINORunner(Runner):
    """OpenVINO on the CPU; ``quantize`` (the INT8 subclass) runs NNCF before compiling."""

    quantize = False

    def __init__(self, threads: int = 1, channels_last: bool = False):
        get_backend(self.backend).check_installed()  # one-line error naming the openvino extra
        import openvino  # optional dependency (the openvino extra)

        super().__init__(threads, channels_last)
        self._core = openvino.Core()
        self._files = OnnxFiles(self.backend)

    def prepare(self, model: nn.Module | OnnxGraph | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        path = self._files.file(model, example_input)
        t0 = time.perf_counter()
        ov_model = self._core.read_model(str(path))
        if self.quantize:
            ov_model = _nncf_quantize(ov_model, example_input)
        config = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "f32"}
        compiled = self._core.compile_model(ov_model, "CPU", config)
        seconds = time.perf_counter() - t0
        arrays = [t.detach().cpu().numpy() for t in flatten_tensors(example_input)]
        if len(compiled.inputs) != len(arrays):
            raise DeviceError(f"ONNX export produced {len(compiled.inputs)} inputs but the example input has "
                              f"{len(arrays)} tensors")
        request = compiled.create_infer_request()
        feeds = dict(enumerate(arrays))

        def run() -> Any:
            return request.infer(feeds)

        self.record_compile(run, seconds)
        return run


@register_backend("openvino-int8", devices=("cpu",), extra="openvino", requires=("openvino", "nncf"),
                  precision="int8", runtime="openvino",
                  description="OpenVINO CPU plugin on an NNCF post-training INT8 quantization of the ONNX "
                              "export (calibrated on the built-in images).")
class OpenVINOInt8Runner(OpenVINORunner):
    """OpenVINO on the CPU, on the NNCF-quantized model."""

    quantize = True
