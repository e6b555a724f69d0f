"""Where a detector trains or evaluates: one descriptor per device kind, one parser for device strings.

Training, ``val`` and the search's trials all take a device string (``cpu``, ``cuda``, ``cuda:N``, ``mps``)
and an AMP mode (``auto``, ``off``, ``fp16``, ``bf16``). :func:`parse_device` checks both before anything
runs (a GPU that is not there is a one-line :class:`~latlab.errors.DeviceError`) and returns a
:class:`TrainDevice`, which says what varies per kind: the autocast dtype, whether fp16 needs a GradScaler,
``cudnn.benchmark``, channels-last, and the key of the host-wide lock that serialises timing on it.

AMP ``auto`` is fp16 with a GradScaler on CUDA (YOLOv5's recipe) and full precision on CPU and MPS;
``bf16`` on CPU is opt-in (whether it is faster depends on the CPU's bf16 support).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from latlab.errors import DeviceError

AMP_MODES = ("auto", "off", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def _cuda_count() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _mps_count() -> int:
    mps = getattr(torch.backends, "mps", None)
    return 1 if mps is not None and mps.is_available() else 0


def _cuda_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported()


@dataclass(frozen=True)
class DeviceKind:
    """What one kind of device needs: how many this host has, which AMP modes it runs and what ``auto``
    means there, ``cudnn.benchmark`` (CUDA) and channels-last (CUDA and CPU: oneDNN's convolutions and the
    channels-last batch norm train yolov5n markedly faster in that layout on the CPU too)."""

    name: str
    count: Callable[[], int]
    amp_modes: tuple[str, ...]
    auto_amp: str
    missing: str
    cudnn_benchmark: bool = False
    channels_last: bool = False
    bf16_ok: Callable[[], bool] = lambda: True


DEVICE_KINDS: dict[str, DeviceKind] = {k.name: k for k in (
    DeviceKind("cpu", lambda: 1, ("off", "bf16"), "off", "", channels_last=True),
    DeviceKind("cuda", _cuda_count, ("off", "fp16", "bf16"), "fp16",
               "no CUDA GPU is available (torch.cuda.is_available() is False)", cudnn_benchmark=True,
               channels_last=True, bf16_ok=_cuda_bf16),
    DeviceKind("mps", _mps_count, ("off", "fp16"), "off",
               "no Apple MPS device is available (torch.backends.mps.is_available() is False)"),
)}


@dataclass(frozen=True)
class TrainDevice:
    """A checked device to train or evaluate on: ``name`` is canonical (``cpu``, ``cuda:0``, ``mps``);
    ``amp`` the AMP mode in force (``off``, ``fp16`` or ``bf16``)."""

    name: str
    kind: DeviceKind
    index: int | None
    amp: str

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.name)

    @property
    def is_cuda(self) -> bool:
        return self.kind.name == "cuda"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        """The autocast dtype, or None for full precision."""
        return _DTYPES.get(self.amp)

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 has fp32's exponent range and needs none."""
        return self.amp == "fp16"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.kind.channels_last else torch.contiguous_format

    @property
    def lock_key(self) -> str:
        """A file-name-safe key of the physical device (CUDA: its UUID when torch reports one)."""
        if self.is_cuda:
            with contextlib.suppress(Exception):
                return f"cuda-{torch.cuda.get_device_properties(self.index).uuid}"
        return self.name.replace(":", "")

    def autocast(self) -> contextlib.AbstractContextManager:
        """The autocast context of this device's AMP mode (a no-op when AMP is off)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.kind.name, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only where fp16 needs one (disabled, it passes calls through)."""
        return torch.amp.GradScaler(self.kind.name if self.needs_scaler else "cpu", enabled=self.needs_scaler)

    def place(self, model: nn.Module) -> nn.Module:
        """Move ``model`` here (in place) in this device's memory format."""
        return model.to(device=self.torch_device, memory_format=self.memory_format)

    def batch(self, imgs: torch.Tensor) -> torch.Tensor:
        """An image batch moved here in this device's memory format."""
        return imgs.to(self.torch_device, non_blocking=self.is_cuda, memory_format=self.memory_format)

    @contextlib.contextmanager
    def session(self) -> Iterator[TrainDevice]:
        """Make this the current device for the block (CUDA: ``torch.cuda.device`` and ``cudnn.benchmark``,
        restored on exit)."""
        if not self.is_cuda:
            yield self
            return
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = self.kind.cudnn_benchmark
        try:
            with torch.cuda.device(self.index):
                yield self
        finally:
            torch.backends.cudnn.benchmark = previous


def split_devices(text: str) -> list[str]:
    """``"cuda:0,1,2"`` → ``["cuda:0", "cuda:1", "cuda:2"]``: a bare index repeats the previous kind."""
    out: list[str] = []
    for part in (p.strip() for p in str(text).split(",")):
        if part.isdigit() and out:
            part = f"{out[-1].split(':')[0]}:{part}"
        out.append(part)
    return out


def parse_device(text: str, amp: str = "auto", *, option: str = "--device") -> TrainDevice:
    """Check ``text`` and ``amp`` against this host; a one-line ``DeviceError`` naming ``option`` otherwise."""
    raw = str(text).strip().lower()
    kind_name, _, idx = raw.partition(":")
    kind = DEVICE_KINDS.get(kind_name)
    if kind is None or (idx and (kind_name != "cuda" or not idx.isdigit())):
        raise DeviceError(f"{option} {text!r}: expected cpu, cuda, cuda:N or mps")
    if amp not in AMP_MODES:
        raise DeviceError(f"--amp {amp!r}: expected one of {', '.join(AMP_MODES)}")
    n = kind.count()
    if n < 1:
        raise DeviceError(f"{option} {text}: {kind.missing}")
    index = int(idx) if idx else (0 if kind_name == "cuda" else None)
    if index is not None and index >= n:
        raise DeviceError(f"{option} {text}: this host has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})")
    mode = kind.auto_amp if amp == "auto" else amp
    if mode != "off" and mode not in kind.amp_modes:
        raise DeviceError(f"--amp {amp} is not supported on {kind_name}: expected one of "
                          f"{', '.join(('auto', *kind.amp_modes))}")
    if mode == "bf16" and not kind.bf16_ok():
        raise DeviceError(f"--amp bf16: {text} does not support bfloat16; use --amp fp16")
    name = f"cuda:{index}" if kind_name == "cuda" else kind_name
    return TrainDevice(name=name, kind=kind, index=index, amp=mode)


def parse_devices(text: str, amp: str = "auto", *, option: str = "--train-device") -> list[TrainDevice]:
    """Every device of a comma-separated list (:func:`split_devices`), each checked by :func:`parse_device`."""
    return [parse_device(d, amp, option=option) for d in split_devices(text)]


def model_device(model: nn.Module, amp: str = "off") -> TrainDevice:
    """The device ``model``'s parameters are on, with AMP ``amp``."""
    p = next(model.parameters(), None)
    where = "cpu" if p is None else (str(p.device) if p.device.type == "cuda" else p.device.type)
    return parse_device(where, amp)
