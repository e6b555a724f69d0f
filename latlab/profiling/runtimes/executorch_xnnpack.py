"""``executorch``: ExecuTorch with the XNNPACK delegate, FP32 (PyTorch's own mobile/ARM path), on the CPU.

The module is exported (``torch.export``), lowered with ``XnnpackPartitioner`` (ops XNNPACK lacks stay on
ExecuTorch's portable kernels) and loaded from the serialized program through ``executorch.runtime``. The
XNNPACK thread pool is sized to the runner's thread count when a model is prepared and at every session.
The runner keeps every loaded program (and its buffer) alive: a method outliving its program segfaults.
Export + lowering + loading seconds are the runner's ``compile_seconds``.
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


def _set_threadpool(threads: int) -> None:
    from executorch.extension.pybindings import portable_lib  # optional dependency (the executorch extra)

    portable_lib._unsafe_reset_threadpool(threads)


@register_backend("executorch", devices=("cpu",), extra="executorch", requires=("executorch",),
                  runtime="executorch",
                  description="ExecuTorch with the XNNPACK delegate, FP32 (torch.export, then lowered).")
class ExecuTorchRunner(Runner):
    """An exported, XNNPACK-lowered program run by the ExecuTorch runtime on the CPU."""

    def __init__(self, threads: int = 1, channels_last: bool = False):
        get_backend(self.backend).check_installed()  # one-line error naming the executorch extra
        super().__init__(threads, channels_last)
        self._programs: list[tuple[bytes, Any]] = []

    def prepare(self, model: nn.Module | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import (  # optional dependency
            XnnpackPartitioner,
        )
        from executorch.exir import to_edge_transform_and_lower  # optional dependency (the executorch extra)
        from executorch.runtime import Runtime  # optional dependency (the executorch extra)

        if not isinstance(model, nn.Module):
            raise DeviceError("--backend executorch needs an nn.Module to export, got a plain callable")
        args = example_input if isinstance(example_input, tuple) else (example_input,)
        t0 = time.perf_counter()
        program = torch.export.export(_private_copy(model), args)
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
        _set_threadpool(self.threads)
        buffer = lowered.buffer
        loaded = Runtime.get().load_program(buffer)
        method = loaded.load_method("forward")
        seconds = time.perf_counter() - t0
        inputs = flatten_tensors(example_input)
        self._programs.append((buffer, loaded))  # a method reads its program's memory: freed, the next call crashes

        def run() -> Any:
            return method.execute(inputs)

        self.record_compile(run, seconds)
        return run

    @contextlib.contextmanager
    def session(self) -> Iterator[Runner]:
        _set_threadpool(self.threads)
        with super().session():
            yield self
