"""The model zoo: YAML configs shipped under ``latlab/configs/``, looked up by name.

Each config carries a ``meta`` mapping (task, family, description, source) that ``latlab zoo`` lists.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

from latlab.errors import UnknownModelError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
# The seed detectors: the two hand-designed lightweight recipes and the YOLOv5n reference. The search
# enqueues them as baseline trials in this order (their trial numbers, and a stored study's settings,
# follow it), so do not reorder; the quickstart tables put YOLOv5n first.
SEED_DETECTORS = ("yolov5s-shufflenetv2", "yolov5s-ghost-backbone", "yolov5n")


@dataclass(frozen=True)
class ZooEntry:
    """One shipped config."""

    name: str
    path: Path
    task: str
    family: str
    description: str
    source: str


@cache
def _entries() -> tuple[ZooEntry, ...]:
    out = []
    for path in sorted(CONFIG_DIR.glob("*.yaml")):
        meta = (yaml.safe_load(path.read_text()) or {}).get("meta", {}) or {}
        out.append(ZooEntry(path.stem, path, meta.get("task", "detect"), meta.get("family", ""),
                            meta.get("description", ""), meta.get("source", "")))
    return tuple(out)


def list_zoo(task: str | None = None) -> list[ZooEntry]:
    """All zoo entries, optionally only ``task`` ("detect" or "classify")."""
    return [e for e in _entries() if task is None or e.task == task]


def resolve_config(name_or_path: str | Path) -> Path:
    """Return the YAML path for an existing file path or, failing that, a zoo name (``yolov5s``).

    A file that exists wins: a local ``yolov5n.yaml`` is the user's model, not the zoo's of that name."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    by_name = {e.name.lower(): e.path for e in _entries()}
    key = text.lower().removesuffix(".yaml").removesuffix(".yml")
    if key in by_name:
        return by_name[key]
    close = difflib.get_close_matches(key, list(by_name), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `latlab zoo` lists the shipped models"
    raise UnknownModelError(f"unknown model {text!r}: not a zoo name and no such file{hint}")
