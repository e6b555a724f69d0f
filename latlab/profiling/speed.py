"""Machine-speed reference: latencies in "milliseconds at this machine's reference speed".

Why: on shared or virtualised machines the whole CPU speeds up and slows down over minutes (co-tenants,
frequency). Interleaving protects ratios measured together, not absolute latencies measured at different
times (a latency table built at 9:00 and checked at 9:20; search trial 1 and trial 80). So every
interleaved measurement also times three fixed *anchor* nets in each round. Each anchor is timed *warm*
(an untimed call right before the timed one), so its time does not depend on what the other models of the
round evicted from the caches. The geometric mean over the anchors of their ``p10`` now, divided by the same
value stored the first time this machine (hardware key, backend, device, threads, layout) was measured, is
the ``speed_factor``; samples are divided by it. A factor of 1.05 means "the machine ran 5 % slower than its
reference": the reported latency is what the model takes at reference speed, and the factor is reported
beside it. The correction holds well within one process and only partly across processes.
Measurements: benchmarks/README.md#speed-reference.

The reference lives in ``cache_dir()/speed/<key>.json`` (``LATLAB_CACHE_DIR`` overrides the folder); delete
it to take a new one. Pass ``speed_reference=False`` to ``run_interleaved`` for raw wall-clock numbers.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from latlab.fingerprint import device_fingerprint, hardware_key
from latlab.inputs import example_input
from latlab.profiling.timer import estimate

ANCHOR_PREFIX = "__anchor"
ANCHOR_PROTOCOL = 2  # part of the reference key: a changed anchor or protocol never reuses an old reference
ANCHOR_IMGSZ = 160
ANCHOR_ESTIMATOR = "p10"
STALE_FACTOR = 1.5


def cache_dir() -> Path:
    """latlab's cache folder: ``$LATLAB_CACHE_DIR``, else ``$XDG_CACHE_HOME/latlab``, else
    ``~/.cache/latlab``."""
    if os.environ.get("LATLAB_CACHE_DIR"):
        return Path(os.environ["LATLAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "latlab"


def _cbr(cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


def anchor_models() -> dict[str, nn.Module]:
    """Three fixed small nets (dense convs; depthwise-separable; grouped 1×1 + channel-heavy), cheap enough
    to time in every round at ``ANCHOR_IMGSZ`` (benchmarks/README.md#speed-reference). Their weights do not
    matter to timing; they are seeded so the nets are identical in every process."""
    with torch.random.fork_rng():
        torch.manual_seed(1234)
        dense = nn.Sequential(*_cbr(3, 16, s=2), *_cbr(16, 32, s=2), *_cbr(32, 32), *_cbr(32, 64, s=2))
        dwsep = nn.Sequential(*_cbr(3, 24, s=2), *_cbr(24, 24, groups=24), *_cbr(24, 48, k=1),
                              *_cbr(48, 48, s=2, groups=48), *_cbr(48, 96, k=1), *_cbr(96, 96, groups=96))
        group = nn.Sequential(*_cbr(3, 32, s=2), *_cbr(32, 64, k=1, groups=4), *_cbr(64, 64, s=2, groups=64),
                              *_cbr(64, 128, k=1, groups=4), nn.AdaptiveAvgPool2d(1))
    return {f"{ANCHOR_PREFIX}_dense": dense.eval(), f"{ANCHOR_PREFIX}_dwsep": dwsep.eval(),
            f"{ANCHOR_PREFIX}_group": group.eval()}


def anchor_input() -> torch.Tensor:
    return example_input(ANCHOR_IMGSZ)


@functools.cache
def reference_key(backend: str, device: str, threads: int, channels_last: bool) -> str:
    """The reference file's name; built from the hardware key, which cannot change within a process."""
    layout = "cl" if channels_last else "cf"
    fp = device_fingerprint(threads, device)
    return f"{hardware_key(fp)}-{backend}-{device}-t{threads}-{layout}-a{ANCHOR_PROTOCOL}"


def _anchor_ms(samples: dict[str, np.ndarray]) -> dict[str, float]:
    return {k: estimate(np.ravel(v), ANCHOR_ESTIMATOR) for k, v in samples.items()}


def speed_factor(anchor_samples: dict[str, np.ndarray], key: str) -> tuple[float, str]:
    """(factor, note): anchors' p10 now / the stored reference (geometric mean over anchors).

    The first call for ``key`` stores the reference and returns 1.0. A factor beyond ``STALE_FACTOR`` either
    way is still applied, with a note (and a warning) saying the reference may be stale.
    """
    now = _anchor_ms(anchor_samples)
    path = cache_dir() / "speed" / f"{key}.json"
    ref = _read_reference(path)
    if ref is None or set(ref.get("anchor_ms", {})) != set(now):
        _write_reference(path, now)
        return 1.0, ""
    factor = math.exp(float(np.mean([math.log(now[k] / ref["anchor_ms"][k]) for k in now])))
    note = ""
    if not 1 / STALE_FACTOR <= factor <= STALE_FACTOR:
        note = (f"machine runs {factor:.2f}× its stored reference speed ({path}); latencies were scaled by "
                "it. Delete that file if the machine really changed")
        warnings.warn(note, RuntimeWarning, stacklevel=3)
    return factor, note


def _read_reference(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    anchors = data.get("anchor_ms") if isinstance(data, dict) else None
    if not isinstance(anchors, dict) or not all(isinstance(v, (int, float)) and v > 0 for v in anchors.values()):
        return None
    return data


def _write_reference(path: Path, anchor_ms: dict[str, float]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"anchor_ms": anchor_ms, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
                              indent=1))
    os.replace(tmp, path)
