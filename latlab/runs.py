"""Run folders: every latlab job writes ``results/<job>/<run>/`` with tables as CSV and a ``meta.json``.

``meta.json`` records the device fingerprint, versions, the command and the time, so a report (or a later
comparison) knows what produced the numbers. Nothing downstream re-measures what a run folder holds.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from latlab import __version__
from latlab.fingerprint import device_fingerprint

RESULTS_ROOT = Path("results")
META_NAME = "meta.json"


def new_run_dir(job: str, name: str | None = None, root: Path | str | None = None) -> Path:
    """Create ``<root>/<job>/<name or timestamp>/`` and return it."""
    base = Path(root) if root is not None else RESULTS_ROOT
    stamp = name or time.strftime("%Y%m%d-%H%M%S")
    path = base / job / stamp
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class RunWriter:
    """Writes tables and the JSON sidecar of one run folder."""

    path: Path
    job: str
    threads: int | None = None
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)

    def save_table(self, df: pd.DataFrame, name: str) -> Path:
        """Save ``df`` as ``<name>.csv`` (and ``.parquet`` when pyarrow is installed)."""
        self.path.mkdir(parents=True, exist_ok=True)
        out = self.path / f"{name}.csv"
        df.to_csv(out, index=False)
        try:
            import pyarrow  # noqa: F401  # optional dependency (the "all" extra): also write parquet

            df.to_parquet(self.path / f"{name}.parquet", index=False)
        except Exception:
            pass
        return out

    def write_meta(self, **more: Any) -> Path:
        meta = {
            "job": self.job,
            "command": " ".join(sys.argv),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "latlab_version": _latlab_version(),
            "fingerprint": device_fingerprint(self.threads, self.device),
            **self.extra,
            **more,
        }
        out = self.path / META_NAME
        out.write_text(json.dumps(meta, indent=2, default=str))
        return out


def read_meta(path: Path | str) -> dict[str, Any]:
    """Read the ``meta.json`` of a run folder."""
    return json.loads((Path(path) / META_NAME).read_text())


def _latlab_version() -> str:
    return __version__
