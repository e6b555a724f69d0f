"""Runtimes beyond eager torch and ONNX Runtime FP32, one module each, each registering its backend(s).

- ``torch_compile``: ``torch-compile`` (inductor, CPU/CUDA; compile time recorded apart from latency);
- ``onnxruntime_int8``: ``onnxruntime-int8`` (static QDQ quantization, per-channel weights, calibrated);
- ``openvino``: ``openvino`` (FP32) and ``openvino-int8`` (NNCF post-training quantization);
- ``executorch_xnnpack``: ``executorch`` (XNNPACK delegate, FP32) and ``executorch-int8`` (PT2E quantization).

``calibration`` feeds the INT8 backends: the built-in detection images when the input is an image batch
(the detection layer registers that source), perturbed copies of the example input otherwise. Importing
this package (``latlab.profiling`` does) registers every backend; a missing package only fails when its
backend is asked for, with a one-line error naming the extra.
"""

from latlab.profiling.runtimes import executorch_xnnpack, onnxruntime_int8, openvino, torch_compile

__all__ = ["executorch_xnnpack", "onnxruntime_int8", "openvino", "torch_compile"]
