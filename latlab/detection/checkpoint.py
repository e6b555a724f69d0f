"""Training checkpoints: plain state dicts written atomically, read back with ``weights_only=True``.

A checkpoint holds everything needed to continue a run as if it had never stopped: model and EMA weights,
optimizer state, the scheduler position (epoch, iteration, elapsed time), the RNG states of torch, numpy
and ``random`` (stored as tensors and plain Python values, which the safe unpickler accepts), the per-epoch
history and the run's settings. ``save_checkpoint`` writes to a temporary file and renames it, so a
process killed while saving leaves the previous checkpoint intact.

Checkpoints are device-independent: every tensor is written as a CPU tensor and read back onto the CPU
(``map_location``), so a run trained on a GPU evaluates or resumes on a CPU-only host and vice versa; the
trainer moves the weights and the optimizer state onto its own device when it loads them.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from latlab.errors import DataError


def rng_state() -> dict[str, Any]:
    """The global RNG states of torch, numpy and ``random`` as weights-only-safe values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "python": {"version": version, "internal": list(internal), "gauss": gauss}}


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def to_cpu(obj: Any) -> Any:
    """``obj`` with every tensor in it (nested dicts, lists, tuples) copied to the CPU, contiguous."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", memory_format=torch.contiguous_format)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return obj


def save_checkpoint(path: Path | str, state: dict[str, Any]) -> Path:
    """Write ``state`` (its tensors on the CPU: :func:`to_cpu`) with ``torch.save`` atomically (temp file +
    rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(to_cpu(state), tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``, every tensor on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: cannot read checkpoint ({exc})") from exc
    return check_checkpoint(obj, path)


def check_checkpoint(obj: Any, path: Path | str) -> dict[str, Any]:
    """``obj`` if it has a checkpoint's shape (a mapping: a latlab checkpoint or a bare state dict, with an
    integer ``nc`` and mapping ``model``/``ema`` when present), else a ``DataError`` naming ``path``."""
    if not isinstance(obj, dict):
        raise DataError(f"{path}: not a checkpoint (its top level is a {type(obj).__name__}, expected a mapping "
                        "written by `latlab train` or a state dict)")
    nc = obj.get("nc")
    if nc is not None and (not isinstance(nc, int) or isinstance(nc, bool) or nc < 1):
        raise DataError(f"{path}: checkpoint field 'nc' must be an integer >= 1, got {str(nc)[:60]!r}")
    for key in ("model", "ema"):
        if obj.get(key) is not None and not isinstance(obj[key], dict):
            raise DataError(f"{path}: checkpoint field {key!r} must be a state dict, got {type(obj[key]).__name__}")
    return obj


def weights_from(ckpt: dict[str, Any], prefer_ema: bool = True) -> dict[str, torch.Tensor]:
    """The state dict to evaluate: the EMA weights when present, else the raw model's."""
    if prefer_ema and ckpt.get("ema") is not None:
        return ckpt["ema"]
    if "model" in ckpt:
        return ckpt["model"]
    return ckpt  # a bare state dict
