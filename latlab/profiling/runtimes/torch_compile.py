"""``torch-compile``: ``torch.compile`` (inductor, mode "default", static shapes) on the CPU or a CUDA GPU.

The first call compiles; ``prepare`` makes it (under the runner's thread count) and records its duration as
the runner's ``compile_seconds``, so compile time is reported apart and never enters a latency sample.
Static shapes (``dynamic=False``) keep every model on its own specialised kernels, and the recompile limit
is raised while compiling: models of one class timed together (``compare``, ``lut build``) each get their
own graph instead of a silent fallback to eager after dynamo's default limit of 8.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from latlab.errors import DeviceError
from latlab.profiling.backends import (
    Runner,
    _private_copy,
    _to_channels_last,
    call_with,
    map_tensors,
    register_backend,
    require_cuda,
)
from latlab.threads import torch_threads

COMPILE_MODE = "default"
RECOMPILE_LIMIT = 4096


@register_backend("torch-compile", devices=("cpu", "cuda"),
                  description="torch.compile (inductor, mode 'default', static shapes); compile time is "
                              "recorded as compile_s, apart from latency (CPU needs a C++ compiler).")
class TorchCompileRunner(Runner):
    """A private copy of the module compiled with inductor; each call runs under ``inference_mode``."""

    @classmethod
    def create(cls, device: str, *, threads: int = 1, channels_last: bool = False) -> Runner:
        return cls(threads, channels_last, device=device)

    def __init__(self, threads: int = 1, channels_last: bool = False, device: str = "cpu"):
        if device == "cuda":
            require_cuda()
        super().__init__(threads, channels_last)
        self.device = device

    def prepare(self, model: nn.Module | Callable[..., Any], example_input: Any) -> Callable[[], Any]:
        if not isinstance(model, nn.Module):
            raise DeviceError("--backend torch-compile needs an nn.Module to compile, got a plain callable")
        module = _private_copy(model).to(self.device)
        x = map_tensors(example_input, lambda t: t.to(self.device))
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last)
            x = map_tensors(x, _to_channels_last)
        compiled = torch.compile(module, mode=COMPILE_MODE, dynamic=False)

        def run() -> Any:
            with torch.inference_mode():
                return call_with(compiled, x)

        limits = {"recompile_limit": RECOMPILE_LIMIT, "accumulated_recompile_limit": RECOMPILE_LIMIT}
        with torch_threads(self.threads), torch._dynamo.config.patch(limits):
            t0 = time.perf_counter()
            run()
            self.sync()
            self.record_compile(run, time.perf_counter() - t0)
        return run

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()
