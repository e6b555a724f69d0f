"""Which loader reads a data path: one :class:`DataFormat` per format, tried in order by :func:`load_dataset`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from latlab.detection.data.builtin import BUILTIN, is_builtin_dir, load_builtin_dir, make_dataset
from latlab.detection.data.coco import is_coco_dir, load_coco
from latlab.detection.data.dataset import DetectionData
from latlab.detection.data.voc import is_voc_dir, load_voc
from latlab.detection.data.yolo import YAML_SUFFIXES, load_yolo
from latlab.detection.synthetic import DEFAULT_PRESET
from latlab.errors import DataError


@dataclass(frozen=True)
class DataFormat:
    """A dataset format: its name, what a path of it looks like, how to recognise one, how to load it."""

    name: str
    looks_like: str
    detect: Callable[[Path], bool]
    load: Callable[..., DetectionData]  # load(path, *, skip_bad_labels)


FORMATS: tuple[DataFormat, ...] = (
    DataFormat("yolo", "a data YAML (.yaml/.yml with train, val, names)",
               lambda p: p.is_file() and p.suffix.lower() in YAML_SUFFIXES, load_yolo),
    DataFormat("coco", "a folder with annotations/instances_*.json", is_coco_dir, load_coco),
    DataFormat("voc", "a folder with Annotations/", is_voc_dir, load_voc),
    DataFormat("builtin", "a folder written by 'latlab data make'", is_builtin_dir, load_builtin_dir),
)


def detect_format(path: Path) -> DataFormat:
    """The first format that recognises ``path``; none: a one-line error listing what was tried."""
    for fmt in FORMATS:
        if fmt.detect(path):
            return fmt
    tried = "; ".join(f"{f.name}: {f.looks_like}" for f in FORMATS)
    raise DataError(f"{path}: not a known dataset format (tried {tried})")


def load_dataset(path_or_builtin: str | Path = BUILTIN, *, imgsz: int = 160, n_train: int = 2000,
                 n_val: int = 400, seed: int = 0, root: Path | str | None = None,
                 preset: str = DEFAULT_PRESET, skip_bad_labels: bool = True) -> DetectionData:
    """Load ``"builtin"`` (generated and cached on first use) or a path in one of :data:`FORMATS`.

    ``imgsz``, ``n_train``, ``n_val``, ``seed``, ``root`` and ``preset`` only apply to the built-in data. Bad labels are
    skipped with a warning naming the file and counted (``skip_bad_labels=False`` raises on the first).
    """
    if str(path_or_builtin) == BUILTIN:
        return load_builtin_dir(make_dataset(imgsz=imgsz, n_train=n_train, n_val=n_val, seed=seed, root=root,
                                             preset=preset))
    path = Path(path_or_builtin)
    if not path.exists():
        raise DataError(f"{path}: data path not found (expected 'builtin', "
                        f"{', '.join(f.looks_like for f in FORMATS)})")
    return detect_format(path).load(path, skip_bad_labels=skip_bad_labels)
