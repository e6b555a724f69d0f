"""The portable latency-table file (JSON): per-block timings, how and where they were taken, calibration.

One file describes one target: device fingerprint, backend, threads, software versions and the timing
protocol sit beside the entries, so a table is never applied to another setting by accident. Layout::

    {
      "format": "latlab-lut", "schema_version": 1, "created": "...", "source": "build" | "kit",
      "backend": "torch" | "onnxruntime" | ..., "precision": "fp32" | "int8", "device": "cpu", "threads": 1,
      "imgsz": 160,
      "estimator": "p10",
      "fingerprint": {...},            # latlab.fingerprint.device_fingerprint (or the kit runner's own)
      "versions": {"latlab": ..., "torch": ..., "onnxruntime": ..., "numpy": ..., "python": ...},
      "protocol": {"engine": "interleaved", "rounds": 60, "batch": 12, "warmup_rounds": 3, ...},
      "space": {"name": ..., "hash": ..., "source": ...},
      "entries": {KEY: {"type", "part", "fields", "args", "in_shapes", "out_shape",
                        "estimate_ms", "median_ms", "iqr_ms", "p10_ms", "min_ms", "n",
                        "params", "madds", "mac_bytes"}},
      "calibration": null | {"method", "coef", "features", "loo_mape", "models": [...], ...},
      "checksum": "sha256 of everything above"
    }

``KEY`` is :func:`latlab.lut.keys.make_key`. ``estimate_ms`` is the ``estimator`` (a low percentile over
interleaved rounds, as everywhere in latlab); median and IQR describe the spread. The checksum makes a
corrupted or hand-edited file fail loudly instead of predicting nonsense. ``precision`` is written by tables
built since backends had precisions; an older table without it was timed in FP32 (the only precision then).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from latlab.errors import TableError
from latlab.validate import positive_float

FORMAT = "latlab-lut"
SCHEMA_VERSION = 1
TOP_FIELDS = ("format", "schema_version", "created", "source", "backend", "device", "threads", "imgsz",
              "estimator", "fingerprint", "versions", "protocol", "space", "entries", "calibration")
NUMBER_FIELDS = ("estimate_ms", "median_ms", "iqr_ms", "p10_ms", "min_ms")
COUNT_FIELDS = ("n", "params", "madds", "mac_bytes")
# Parts of a fingerprint that change latency: the same-device test for on-the-fly measurement.
DEVICE_KEYS = ("cpu_model", "machine", "logical_cores")


@dataclass
class Entry:
    """One block instance: its timing statistics (ms) and what it is."""

    type: str
    estimate_ms: float
    median_ms: float
    iqr_ms: float
    p10_ms: float
    min_ms: float
    n: int
    part: str = "backbone"
    fields: dict[str, Any] = field(default_factory=dict)
    args: dict[str, Any] = field(default_factory=dict)
    in_shapes: list[list[int]] = field(default_factory=list)
    out_shape: list[int] = field(default_factory=list)
    params: int = 0
    madds: int = 0
    mac_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str) -> Entry:
        """Validate the fields of one entry (``where`` names it in errors)."""
        if not isinstance(d, dict):
            raise TableError(f"{where}: expected a mapping, got {type(d).__name__}")
        missing = [k for k in ("type", *NUMBER_FIELDS, "n") if k not in d]
        if missing:
            raise TableError(f"{where}: missing field(s) {', '.join(missing)}")
        for k in NUMBER_FIELDS:  # a time of 0 ms is no measurement; only the spread (IQR) may be 0
            positive_float(d[k], f"{where}: field '{k}'", allow_zero=k == "iqr_ms", error=TableError)
        for k in COUNT_FIELDS:
            v = d.get(k, 0)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise TableError(f"{where}: field '{k}' must be an integer >= 0, got {v!r}")
        if d["n"] < 1:
            raise TableError(f"{where}: field 'n' must be >= 1 (number of timing samples), got {d['n']}")
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass
class Calibration:
    """Maps the raw block sum (and optionally madds, mac_bytes) to an end-to-end latency.

    ``method``: ``scale`` (a·sum), ``linear`` (a·sum + b) or ``regression`` (a·sum + b·GMAdds + c·MB + d),
    fitted by least squares on relative error over ``models`` (measured end to end on the same target).
    ``loo_mape`` is the leave-one-out mean absolute % error of each method on those models.
    """

    method: str
    coef: dict[str, float]
    loo_mape: dict[str, float] = field(default_factory=dict)
    models: list[dict[str, Any]] = field(default_factory=list)

    def apply(self, sum_ms: float, madds: int = 0, mac_bytes: int = 0) -> float:
        c = self.coef
        return (c.get("sum_ms", 1.0) * sum_ms + c.get("gmadds", 0.0) * madds / 1e9
                + c.get("mac_mb", 0.0) * mac_bytes / 1e6 + c.get("intercept", 0.0))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Any, where: str) -> Calibration:
        if not isinstance(d, dict) or "method" not in d or not isinstance(d.get("coef"), dict):
            raise TableError(f"{where}: 'calibration' must be null or a mapping with 'method' and 'coef'")
        for k, v in d["coef"].items():
            if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
                raise TableError(f"{where}: calibration coefficient '{k}' must be a finite number, got {v!r}")
        if "sum_ms" in d["coef"]:  # latency grows with the block sum; a scale <= 0 predicts nonsense
            positive_float(d["coef"]["sum_ms"], f"{where}: calibration coefficient 'sum_ms'", error=TableError)
        return cls(d["method"], dict(d["coef"]), dict(d.get("loo_mape", {})), list(d.get("models", [])))


def _refuse_constant(name: str) -> float:
    """``json.loads`` hook: NaN and ±Infinity are not numbers a table may hold."""
    raise ValueError(f"the file contains {name}")


def package_versions() -> dict[str, str | None]:
    """Versions of the software that produced the numbers (None where a package is not installed)."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("latlab", "torch", "onnxruntime", "openvino", "nncf", "numpy"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def device_key(fp: dict[str, Any]) -> str:
    """Short hash of the fingerprint fields that identify the hardware (not load, time or versions)."""
    blob = json.dumps({k: fp.get(k) for k in DEVICE_KEYS}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def _canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "checksum"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


@dataclass
class LatencyTable:
    """A latency table in memory. ``entries`` maps block key → :class:`Entry`."""

    backend: str
    threads: int
    imgsz: int
    estimator: str
    fingerprint: dict[str, Any]
    versions: dict[str, Any]
    protocol: dict[str, Any]
    space: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, Entry] = field(default_factory=dict)
    calibration: Calibration | None = None
    device: str = "cpu"
    source: str = "build"
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    path: Path | None = None
    precision: str | None = None  # None: a table written before precisions were recorded (FP32)

    # ------------------------------------------------------------------------------------------ identity
    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": FORMAT, "schema_version": SCHEMA_VERSION, "created": self.created, "source": self.source,
            "backend": self.backend, "device": self.device, "threads": self.threads, "imgsz": self.imgsz,
            **({"precision": self.precision} if self.precision is not None else {}),
            "estimator": self.estimator, "fingerprint": self.fingerprint, "versions": self.versions,
            "protocol": self.protocol, "space": self.space,
            "entries": {k: e.to_dict() for k, e in sorted(self.entries.items())},
            "calibration": self.calibration.to_dict() if self.calibration else None,
        }
        doc["checksum"] = hashlib.sha256(_canonical(doc)).hexdigest()
        return doc

    @property
    def checksum(self) -> str:
        """sha256 of the table's content: its identity for the search and for reports."""
        return self.to_dict()["checksum"]

    @property
    def device_key(self) -> str:
        return device_key(self.fingerprint)

    def identity(self) -> dict[str, Any]:
        """What a study or a report records about the table it used."""
        return {"path": str(self.path) if self.path else None, "sha256": self.checksum, "backend": self.backend,
                "precision": self.timed_precision,
                "threads": self.threads, "imgsz": self.imgsz, "estimator": self.estimator,
                "device_key": self.device_key, "cpu_model": self.fingerprint.get("cpu_model"),
                "entries": len(self.entries), "calibration": self.calibration.method if self.calibration else None}

    # ----------------------------------------------------------------------------------------------- I/O
    def save(self, path: Path | str) -> Path:
        """Write atomically (temp file + rename), so a crash never leaves a half-written table."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w") as fh:
            json.dump(self.to_dict(), fh, indent=1, allow_nan=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        self.path = path
        return path

    @classmethod
    def from_dict(cls, doc: Any, where: str = "<table>", *, verify: bool = True) -> LatencyTable:
        """Validate a parsed document; every problem is a ``TableError`` naming ``where`` and the field."""
        if not isinstance(doc, dict):
            raise TableError(f"{where}: not a latency table (expected a JSON object, got {type(doc).__name__})")
        if doc.get("format") != FORMAT:
            raise TableError(f"{where}: not a latency table ('format' is {doc.get('format')!r}, expected "
                             f"{FORMAT!r})")
        version = doc.get("schema_version")
        if not isinstance(version, int) or version < 1:
            raise TableError(f"{where}: 'schema_version' must be a positive integer, got {version!r}")
        if version > SCHEMA_VERSION:
            raise TableError(f"{where}: written with table schema {version}, this latlab reads schema "
                             f"<= {SCHEMA_VERSION}; upgrade latlab")
        missing = [k for k in TOP_FIELDS if k not in doc]
        if missing:
            raise TableError(f"{where}: missing field(s) {', '.join(missing)}")
        if verify:
            stored = doc.get("checksum")
            actual = hashlib.sha256(_canonical(doc)).hexdigest()
            if stored is None:
                raise TableError(f"{where}: no 'checksum' field (file incomplete or not written by latlab)")
            if stored != actual:
                raise TableError(f"{where}: checksum mismatch (stored {str(stored)[:12]}…, content "
                                 f"{actual[:12]}…): the file was modified or corrupted after it was written")
        for k, typ in (("threads", int), ("imgsz", int)):
            if not isinstance(doc[k], typ) or isinstance(doc[k], bool) or doc[k] < 1:
                raise TableError(f"{where}: '{k}' must be a positive integer, got {doc[k]!r}")
        for k in ("fingerprint", "versions", "protocol", "space", "entries"):
            if not isinstance(doc[k], dict):
                raise TableError(f"{where}: '{k}' must be a mapping, got {type(doc[k]).__name__}")
        entries = {key: Entry.from_dict(e, f"{where}: entry {key!r}") for key, e in doc["entries"].items()}
        cal = doc["calibration"]
        calibration = None if cal is None else Calibration.from_dict(cal, where)
        return cls(backend=str(doc["backend"]), threads=doc["threads"], imgsz=doc["imgsz"],
                   estimator=str(doc["estimator"]), fingerprint=doc["fingerprint"], versions=doc["versions"],
                   protocol=doc["protocol"], space=doc["space"], entries=entries, calibration=calibration,
                   device=str(doc["device"]), source=str(doc["source"]), created=str(doc["created"]),
                   precision=str(doc["precision"]) if "precision" in doc else None)

    @classmethod
    def load(cls, path: Path | str, *, backend: str | None = None, threads: int | None = None,
             imgsz: int | None = None, verify: bool = True) -> LatencyTable:
        """Read and validate a table; with ``backend``/``threads``/``imgsz`` also check it matches them."""
        path = Path(path)
        if not path.is_file():
            partial = path.with_name(path.name + ".partial")
            hint = (f"; a partial build is at {partial}: run the same `latlab lut build` again to finish it"
                    if partial.exists() else "; build one with `latlab lut build` or `latlab lut import`")
            raise TableError(f"{path}: no such latency table{hint}")
        text = path.read_text(errors="replace")
        if not text.strip():
            raise TableError(f"{path}: empty file (truncated while writing?); rebuild the table")
        try:
            doc = json.loads(text, parse_constant=_refuse_constant)
        except ValueError as exc:
            if not isinstance(exc, json.JSONDecodeError):
                raise TableError(f"{path}: {exc}; a table holds finite numbers only") from None
            # a complete table ends with its closing brace; trailing garbage ("Extra data") is corruption
            truncated = not text.rstrip().endswith("}") and not exc.msg.startswith("Extra data")
            what = "ends early (truncated file?)" if truncated else "is corrupt"
            raise TableError(f"{path}: not valid JSON, the file {what}: {exc.msg} at line {exc.lineno}, "
                             f"column {exc.colno}") from None
        table = cls.from_dict(doc, str(path), verify=verify)
        table.path = path
        table.check(backend=backend, threads=threads, imgsz=imgsz)
        return table

    # --------------------------------------------------------------------------------------- compatibility
    @property
    def timed_precision(self) -> str:
        """The precision the entries were timed in (``fp32`` for a table that predates the field)."""
        return self.precision or "fp32"

    def check(self, *, backend: str | None = None, threads: int | None = None, imgsz: int | None = None,
              precision: str | None = None) -> None:
        """Raise ``TableError`` when the table was measured for another backend, precision, thread count or
        input size."""
        where = str(self.path) if self.path else "latency table"
        if backend is not None and backend != self.backend:
            raise TableError(f"{where}: measured with backend '{self.backend}', but '{backend}' was requested; "
                             f"build a table with --backend {backend} or request --backend {self.backend}")
        if precision is not None and precision != self.timed_precision:
            raise TableError(f"{where}: timed in {self.timed_precision}, but {precision} was requested; build a "
                             f"table with a backend that runs in {precision}")
        if threads is not None and threads != self.threads:
            raise TableError(f"{where}: measured with {self.threads} thread(s), but {threads} were requested; "
                             f"build a table with --threads {threads} or request --threads {self.threads}")
        if imgsz is not None and imgsz != self.imgsz:
            raise TableError(f"{where}: measured at input size {self.imgsz}, but {imgsz} was requested; block "
                             f"latencies depend on resolution: build a table with --imgsz {imgsz}")

    def missing(self, keys: list[str]) -> list[str]:
        """The keys (in order, without repeats) that have no entry."""
        return [k for k in dict.fromkeys(keys) if k not in self.entries]
