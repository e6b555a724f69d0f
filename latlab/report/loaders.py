"""Find the run folders under a results directory and say which report page each belongs to.

A run folder is any folder with a ``meta.json`` (written by :class:`latlab.runs.RunWriter`). Its kind comes
from ``meta["job"]`` (first word before ``-``/``_``: ``lut-check`` → ``lut``; a job no page knows, such as
``train`` or ``lint``, is skipped with the reason) and, when ``meta.json`` names no job, from the columns of its CSV tables (a ``trial``+``state`` table is a search, a
``predicted_ms``+``measured_ms`` table a latency-table check, a table with a ``verdict`` column a guideline
run, a count or latency table a profile). Tables are recognised by their columns, not their file names,
because two jobs may use one name (``ops.csv`` is a count table in a ``count`` run and a profiler table in
a ``profile`` run).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from latlab.errors import LatlabError
from latlab.runs import META_NAME
from latlab.search.evaluate import TRIALS_DIR

KINDS: tuple[str, ...] = ("guidelines", "profile", "search", "lut", "fidelity")
KIND_TITLES = {"guidelines": "Guidelines", "profile": "Profile", "search": "Search",
               "lut": "Latency tables", "fidelity": "Estimator fidelity"}
JOB_KINDS: dict[str, str] = {
    "guidelines": "guidelines", "guideline": "guidelines",
    "profile": "profile", "count": "profile", "crosscheck": "profile", "layerwise": "profile",
    "search": "search",
    "lut": "lut",
    "fidelity": "fidelity",
}
EXPECTED = ("run folders with a meta.json and CSV tables, as written by `latlab guidelines` "
            "(results/guidelines/<run>/), `latlab profile`/`latlab count --save` (results/profile|count/<run>/), "
            "`latlab search export` (results/search/...), `latlab lut check` (results/lut/...) or "
            "`latlab fidelity run` (results/fidelity/...)")

# Column sets that identify a table, whatever its file name.
COUNT_COLUMNS = frozenset({"layer", "module", "op", "category", "madds", "mac_bytes"})
LAYER_LATENCY_COLUMNS = frozenset({"layer", "estimate_ms"})
CROSSCHECK_COLUMNS = frozenset({"counter", "total", "ratio_to_latlab_madds"})
TRIAL_COLUMNS = frozenset({"trial", "state"})
LUT_CHECK_COLUMNS = frozenset({"predicted_ms", "measured_ms"})
FIDELITY_COLUMNS = frozenset({"estimator", "kendall_tau"})


def job_kind(job: Any) -> str | None:
    """The report kind of a ``meta["job"]`` value, or None when no page shows that job."""
    if not isinstance(job, str) or not job:
        return None
    first = re.split(r"[-_/ .]", job.strip().lower(), maxsplit=1)[0]
    return JOB_KINDS.get(job.strip().lower(), JOB_KINDS.get(first))


@dataclass
class Run:
    """One run folder: its ``meta.json``, its CSV tables (by file stem) and the report kind."""

    path: Path
    meta: dict[str, Any]
    kind: str
    csvs: dict[str, Path] = field(default_factory=dict)

    @property
    def job(self) -> str:
        return str(self.meta.get("job", ""))

    @property
    def command(self) -> str | None:
        return self.meta.get("command")

    @property
    def time(self) -> str | None:
        return self.meta.get("time")

    @property
    def fingerprint(self) -> dict[str, Any]:
        fp = self.meta.get("fingerprint")
        return fp if isinstance(fp, dict) else {}

    @property
    def label(self) -> str:
        """``job · run-folder-name`` plus the model when the run names one."""
        model = self.meta.get("model")
        base = f"{self.job or self.kind} · {self.path.name}"
        return f"{base} · {model}" if model else base

    @cached_property
    def _read(self) -> tuple[dict[str, pd.DataFrame], dict[Path, str]]:
        tables, unreadable = {}, {}
        for name, p in self.csvs.items():
            try:
                tables[name] = pd.read_csv(p)
            except (OSError, ValueError) as exc:  # empty, not CSV, not UTF-8, a folder named *.csv ...
                tables[name] = pd.DataFrame()
                unreadable[p] = unreadable_reason(exc)
        return tables, unreadable

    @property
    def _tables(self) -> dict[str, pd.DataFrame]:
        return self._read[0]

    @property
    def unreadable(self) -> dict[Path, str]:
        """The CSV files of this run that could not be read, with why (their tables show as empty)."""
        return self._read[1]

    def table(self, name: str) -> pd.DataFrame | None:
        """The CSV ``<name>.csv`` of this run, or None."""
        return self._tables.get(name)

    def tables_with(self, columns: Iterable[str]) -> dict[str, pd.DataFrame]:
        """Every table (by file stem) that has all of ``columns``."""
        need = set(columns)
        return {n: df for n, df in self._tables.items() if need <= set(df.columns)}

    def first_with(self, columns: Iterable[str], prefer: Iterable[str] = ()) -> tuple[str, pd.DataFrame] | None:
        """The first table having ``columns``, trying the file stems in ``prefer`` first."""
        found = self.tables_with(columns)
        for name in prefer:
            if name in found:
                return name, found[name]
        return next(iter(found.items()), None)

    def all_tables(self) -> dict[str, pd.DataFrame]:
        return dict(self._tables)


@dataclass
class Discovery:
    """What a results directory holds: the runs with a report page, and what was skipped and why."""

    root: Path
    runs: list[Run]
    skipped: list[tuple[Path, str]] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Run]:
        return [r for r in self.runs if r.kind == kind]

    @property
    def kinds(self) -> list[str]:
        return [k for k in KINDS if self.of_kind(k)]


def unreadable_reason(exc: BaseException) -> str:
    """Why pandas could not read a CSV, in a few words."""
    if isinstance(exc, pd.errors.EmptyDataError):
        return "empty file"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte {exc.start})"
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return f"not a readable CSV table ({first[:120]})"


def _kind_from_columns(csvs: dict[str, Path]) -> str | None:
    cols: set[str] = set()
    for p in csvs.values():
        try:
            cols |= set(pd.read_csv(p, nrows=0).columns)
        except (OSError, ValueError):
            continue
    if cols >= TRIAL_COLUMNS:
        return "search"
    if cols >= LUT_CHECK_COLUMNS:
        return "lut"
    if cols >= FIDELITY_COLUMNS:
        return "fidelity"
    if "verdict" in cols:
        return "guidelines"
    if cols >= COUNT_COLUMNS or cols >= LAYER_LATENCY_COLUMNS or cols >= CROSSCHECK_COLUMNS:
        return "profile"
    return None


def load_run(path: Path | str) -> Run | tuple[Path, str]:
    """A :class:`Run` for a folder with ``meta.json``, or ``(path, reason)`` when no page shows it."""
    folder = Path(path)
    try:
        meta = json.loads((folder / META_NAME).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        return folder, f"unreadable {META_NAME} ({exc})"
    if not isinstance(meta, dict):
        return folder, f"{META_NAME} is not a JSON object"
    csvs = {p.stem: p for p in sorted(folder.glob("*.csv"))}
    job = meta.get("job")
    kind = job_kind(job) if job else _kind_from_columns(csvs)
    if kind is None:
        return folder, f"job {meta.get('job')!r} has no report page (pages: {', '.join(KINDS)})"
    return Run(folder, meta, kind, csvs)


def _is_search_trial(folder: Path) -> bool:
    """``<study dir>/trials/<number>/``: where a search keeps one trial's training run."""
    return folder.parent.name == TRIALS_DIR and folder.name.isdigit()


def discover(results_dir: Path | str) -> Discovery:
    """Every run folder under ``results_dir`` (itself included) that a report page can show.

    Raises ``LatlabError`` naming what was expected when the folder is missing, empty or holds no run of
    a known kind.
    """
    root = Path(results_dir)
    if not root.exists():
        raise LatlabError(f"{root} does not exist; expected a results folder holding {EXPECTED}")
    if not root.is_dir():
        raise LatlabError(f"{root} is a file, not a folder; expected a results folder holding {EXPECTED}")
    metas = sorted(root.rglob(META_NAME))
    runs: list[Run] = []
    skipped: list[tuple[Path, str]] = []
    for m in metas:
        if _is_search_trial(m.parent):
            continue  # a search trial's training folder: the search page shows the trial
        got = load_run(m.parent)
        if isinstance(got, Run):
            runs.append(got)
        else:
            skipped.append(got)
    if not runs:
        if not metas:
            n = sum(1 for _ in root.rglob("*"))
            what = "is empty" if n == 0 else f"holds {n} files or folders but no {META_NAME}"
            raise LatlabError(f"{root} {what}: no latlab results to report; expected {EXPECTED}")
        reasons = "; ".join(f"{p}: {why}" for p, why in skipped[:5])
        raise LatlabError(f"{root} holds {len(metas)} run folder(s) but none a report page shows ({reasons}); "
                          f"expected {EXPECTED}")
    runs.sort(key=lambda r: (KINDS.index(r.kind), str(r.path)))
    return Discovery(root, runs, skipped)
