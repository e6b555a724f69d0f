"""Device fingerprint: what machine, software and settings a result was measured with.

Latency numbers mean nothing without it, so every run folder's ``meta.json`` carries one and the search
refuses to mix latencies from different fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psutil
import torch

from latlab.allocator import allocator_state


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _governor() -> str | None:
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except Exception:
        return None


def device_fingerprint(threads: int | None = None, device: str = "cpu") -> dict[str, Any]:
    """Return a JSON-able description of this machine and the software stack.

    ``threads`` is the thread count the measurement used (defaults to torch's current setting).
    """
    freq = psutil.cpu_freq()
    fp: dict[str, Any] = {
        "cpu_model": _cpu_model(),
        "machine": platform.machine(),
        "physical_cores": psutil.cpu_count(logical=False),
        "logical_cores": psutil.cpu_count(logical=True),
        "cpu_freq_mhz": round(freq.max or freq.current, 1) if freq else None,
        "governor": _governor(),
        "ram_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": _package_version("onnxruntime"),
        "threads": threads if threads is not None else torch.get_num_threads(),
        "load_avg_1m": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "device": device,
        "cpu_allocator": allocator_state(),
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        idx = torch.device(device).index or 0
        fp["gpu_name"] = torch.cuda.get_device_name(idx)
        fp["cuda"] = torch.version.cuda
        fp["cudnn"] = torch.backends.cudnn.version()
    return fp


def hardware_key(fp: dict[str, Any]) -> str:
    """A short hash of the parts of a fingerprint that change latency (not load or time)."""
    keys = ("cpu_model", "machine", "logical_cores", "torch", "threads", "device", "gpu_name")
    blob = json.dumps({k: fp.get(k) for k in keys}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def warn_if_busy(fp: dict[str, Any] | None = None, *, sample_s: float = 0.0) -> bool:
    """Warn when the machine is busy: timings taken now are unreliable.

    By default the test is the 1-minute load average > half the cores. The load average also counts the
    caller's own recent work (a benchmark that just timed a model for a minute has load ≈ 1), so a timer
    that is idle at the moment of the check passes ``sample_s`` > 0: the CPU use of the whole machine is then
    sampled for that many seconds, and more than half the cores busy meanwhile is what counts.
    """
    fp = fp or device_fingerprint()
    load, cores = fp.get("load_avg_1m"), fp.get("logical_cores") or 1
    if sample_s > 0:
        busy_cores = psutil.cpu_percent(interval=sample_s) / 100.0 * cores
        if busy_cores > cores / 2:
            warnings.warn(
                f"machine is busy ({busy_cores:.1f} of {cores} cores in use by other work before timing, "
                f"load average {load}): latency measurements will be noisy",
                RuntimeWarning,
                stacklevel=2,
            )
            return True
        return False
    if load is not None and load > cores / 2:
        warnings.warn(
            f"machine is busy (load average {load:.2f} > {cores}/2 cores): latency measurements will be noisy",
            RuntimeWarning,
            stacklevel=2,
        )
        return True
    return False
