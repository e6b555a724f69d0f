"""``executorch`` (FP32) and ``executorch-int8``: ExecuTorch with the XNNPACK delegate (PyTorch's own
mobile/ARM path), on the CPU.

The module is exported (``torch.export``), lowered with ``XnnpackPartitioner`` (ops XNNPACK lacks stay on
ExecuTorch's portable kernels) and loaded from the serialized program through ``executorch.runtime``. The
XNNPACK thread pool is sized to the runner's thread count when a model is prepared and at every session.
``executorch-int8`` quantizes the exported graph first with PT2E (``torchao``'s ``prepare_pt2e`` /
``convert_pt2e``) and ``XNNPACKQuantizer``'s symmetric config with per-channel weights (static INT8
activations), calibrated on ``calibration.calibration_for`` (the built-in images for an image batch).
Export + quantization + lowering + loading seconds are the runner's ``compile_seconds``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from latlab.errors import DeviceError
from latlab.profiling.backends import Runner, _private_copy, flatten_tensors, get_backend, register_backend
from latlab.profiling.runtimes.calibration import calibration_for


def _set_threadpool(threads: int) -> None:
    from executorch.extension.pybindings import portable_lib  # optional dependency (the executorch extra)

    portable_lib._unsafe_reset_threadpool(threads)


def _quantize_pt2e(program: torch.export.ExportedProgram, args: tuple[Any, ...],
                   example_input: Any) -> torch.export.ExportedProgram:
    """``program`` quantized to static INT8 for XNNPACK (symmetric, per-channel weights), re-exported."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (  # optional dependency
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e  # optional dependency

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        for arrays in calibration_for(example_input).batches:
            prepared(*(torch.from_numpy(a) for a in arrays))
    return torch.export.export(convert_pt2e(prepared), args)


class _ProgramCall:
    """One inference of a loaded method. It keeps its ``Program`` alive: the method runs on the program's
    memory, and a program that is garbage-collected leaves the method reading freed memory (a crash, or
    "Invalid number of inputs provided. Expected 0")."""

    def __init__(self, buffer: bytes, program: Any, method: Any, inputs: list[torch.Tensor]):
        self.buffer, self.program, self.method, self.inputs = buffer, program, method, inputs

    def __call__(self) -> Any:
        return self.method.execute(self.inputs)


@register_backend("executorch", devices=("cpu",), extra="executorch", requires=("executorch",),
                  runtime="executorch",
                  description="ExecuTorch with the XNNPACK delegate, FP32 (torch.export, then lowered).")
class ExecuTorchRunner(Runner):
    """An exported, XNNPACK-lowered program run by the ExecuTorch runtime on the CPU; ``quantize`` (the INT8
    subclass) runs PT2E quantization before lowering."""

    quantize = False

    def __init__(self, threads: int = 1, channels_last: bool = False):
        get_backend(self.backend).check_installed()  # one-line error naming the executorch extra
        super().__init__(threads, channels_last)

    def prepare(self, model: nn.Module | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (  # optional dependency
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower  # optional dependency (the executorch extra)
        from executorch.runtime import Runtime  # optional dependency (the executorch extra)

        if not isinstance(model, nn.Module):
            raise DeviceError(f"--backend {self.backend} needs an nn.Module to export, got a plain callable")
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        t0 = time.perf_counter()
        program = torch.export.export(_private_copy(model), args)
        if self.quantize:
            program = _quantize_pt2e(program, args, example_input)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        _set_threadpool(self.threads)
        buffer = lowered.buffer
        loaded = Runtime.get().load_program(buffer)
        call = _ProgramCall(buffer, loaded, loaded.load_method("forward"), flatten_tensors(example_input))
        seconds = time.perf_counter() - t0
        self.record_compile(call, seconds)
        return call

    @contextlib.contextmanager
    def session(self) -> Iterator[Runner]:
        _set_threadpool(self.threads)
        with super().session():
            yield self


@register_backend("executorch-int8", devices=("cpu",), extra="executorch", requires=("executorch", "torchao"),
                  precision="int8", runtime="executorch",
                  description="ExecuTorch with the XNNPACK delegate on a PT2E static INT8 quantization "
                              "(XNNPACKQuantizer, symmetric, per-channel weights, calibrated on the built-in "
                              "images).")
class ExecuTorchInt8Runner(ExecuTorchRunner):
    """ExecuTorch + XNNPACK on the CPU, on the PT2E-quantized program."""

    quantize = True
