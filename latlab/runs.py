"""Run folders: every latlab job writes ``results/<job>/<run>/`` with tables as CSV and a ``meta.json``.

``meta.json`` records the device fingerprint, versions, the command and the time, so a report (or a later
comparison) knows what produced the numbers. Nothing downstream re-measures what a run folder holds.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import shutil
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from latlab import __version__
from latlab.errors import ConfigError
from latlab.fingerprint import device_fingerprint

RESULTS_ROOT = Path("results")
META_NAME = "meta.json"


def new_run_dir(job: str, name: str | None = None, root: Path | str | None = None, *, prefix: str = "",
                resume: bool = False, force: bool = False) -> Path:
    """Create the run folder ``<root>/<job>/<name>`` (or ``<prefix><timestamp>``) and return it.

    A timestamped folder is new by construction: it is made with ``mkdir`` without ``exist_ok`` and gets a
    ``-2``, ``-3`` ... suffix when another run took the same second, so two runs never share one. A ``name``
    that exists is refused (one line) unless ``resume`` (continue it as it is; it must exist) or ``force``
    (its old contents are deleted first).
    """
    base = (Path(root) if root is not None else RESULTS_ROOT) / job
    if name is None:
        if resume:
            raise ConfigError("resume needs the name of the run to continue (--name)")
        base.mkdir(parents=True, exist_ok=True)
        stamp = prefix + time.strftime("%Y%m%d-%H%M%S")
        for n in itertools.count(1):
            path = base / (stamp if n == 1 else f"{stamp}-{n}")
            try:
                path.mkdir()
                return path
            except FileExistsError:
                continue
    if not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise ConfigError(f"run name {name!r}: expected a plain folder name (no '/', '\\' or '..')")
    path = base / name
    if resume:
        if not path.is_dir():
            raise ConfigError(f"{path}: no such run to resume (check --name)")
        return path
    if force and path.is_dir():
        shutil.rmtree(path)
    base.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir()
    except FileExistsError:
        raise ConfigError(f"{path}: a run of that name exists; pass --resume to continue it, --force to "
                          "overwrite it, or choose another --name") from None
    return path


@contextlib.contextmanager
def removed_if_left_empty(path: Path) -> Iterator[Path]:
    """Yield ``path``; when the block fails (Ctrl-C included) and left the folder empty, remove it, so a failed
    command leaves no empty run folder behind. A folder with anything in it is kept."""
    try:
        yield path
    except BaseException:
        with contextlib.suppress(OSError):
            path.rmdir()  # only an empty folder
        raise


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
