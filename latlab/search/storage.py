"""Where a study lives: an Optuna journal file (default ``results/search/<study>/journal.log``) or an RDB URL
(``postgresql://...``, the multi-worker path; heartbeats retry trials of workers that died on other hosts).

A journal is checked before Optuna opens it. Optuna's ``JournalFileBackend`` skips a torn last line (a process
killed mid-write) when reading, but appends the next record right onto it, after which every read fails with
a JSON error; it has no recovery of its own. So :func:`repair_journal`, under the journal's own lock, copies
the file to ``<file>.bak`` and cuts the torn tail; a complete line that is not a journal record is one error
line naming it (the records after it may depend on it, so it is not dropped silently).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage, RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.storages.journal import JournalFileBackend, JournalFileSymlinkLock
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, ProgrammingError

from latlab.appendfile import repair_tail
from latlab.errors import SearchError
from latlab.runs import RESULTS_ROOT
from latlab.search.liveness import HEARTBEAT_S, MAX_RETRIES


@dataclass
class StorageInfo:
    """An opened storage: ``kind`` is "journal" or "rdb"; ``location`` is printable (password hidden)."""

    kind: str
    location: str
    storage: Any


def study_dir(study: str, root: Path | str = RESULTS_ROOT) -> Path:
    """The study's folder: journal, trial folders and exports."""
    return Path(root) / "search" / study


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***``."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def open_storage(spec: str | None, study: str, root: Path | str = RESULTS_ROOT, *, create: bool = True
                 ) -> StorageInfo:
    """Open ``spec``: None → the default journal file, a URL with ``://`` → RDB, else a journal path."""
    if spec and "://" in spec:
        return _open_rdb(spec)
    if spec:
        path = Path(spec)
        if path.is_dir() or spec.endswith(("/", os.sep)):
            path = path / "journal.log"
    else:
        path = study_dir(study, root) / "journal.log"
    if not create and not path.is_file():
        raise SearchError(f"no search journal at {path} (run `latlab search run --study {study}` first, "
                          "or pass --storage)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        repair_journal(path)
        return StorageInfo("journal", str(path), JournalStorage(JournalFileBackend(str(path))))
    except OSError as exc:
        raise SearchError(f"cannot open journal storage {path}: {exc}") from None
    except ValueError as exc:  # Optuna's replay of a record it cannot use
        raise SearchError(f"{path}: not a usable Optuna journal ({str(exc)[:160]})") from None


def repair_journal(path: Path) -> bool:
    """Cut a torn last line of the journal at ``path`` (after a copy to ``<path>.bak``), under the lock Optuna's
    writers hold while appending; a complete line that is not a journal record raises ``SearchError``.
    True when the file was repaired. A sound journal is only read (no lock, so read-only folders work)."""
    if not path.is_file() or _journal_problem(path.read_bytes(), path) is None:
        return False
    lock = JournalFileSymlinkLock(str(path))
    lock.acquire()
    try:
        data = path.read_bytes()  # again, under the lock: a writer may have finished its line meanwhile
        if _journal_problem(data, path) is None:
            return False
        shutil.copyfile(path, path.with_name(path.name + ".bak"))
        repair_tail(path)
        return True
    finally:
        lock.release()


def _journal_problem(data: bytes, path: Path) -> str | None:
    """``"torn"`` when the last line lacks its newline, None when the journal is sound; ``SearchError`` for a
    complete line that is not a journal record."""
    for i, line in enumerate(data.split(b"\n")[:-1]):  # complete lines only: a torn tail has no newline
        try:
            rec = json.loads(line)
        except ValueError:
            rec = None
        if not isinstance(rec, dict) or "op_code" not in rec:
            raise SearchError(f"{path}: line {i + 1} is not an Optuna journal record (corrupt journal: "
                              f"{line[:60].decode(errors='replace')!r}); restore a backup, or move the file "
                              "away to start the study over")
    return "torn" if data and not data.endswith(b"\n") else None


def _open_rdb(url: str) -> StorageInfo:
    """RDB storage with heartbeats; retried while concurrent workers create Optuna's tables."""
    shown = mask_url(url)
    for attempt in range(6):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # heartbeat arguments are flagged experimental
                storage = RDBStorage(url, engine_kwargs={"pool_pre_ping": True}, heartbeat_interval=HEARTBEAT_S,
                                     grace_period=4 * HEARTBEAT_S,
                                     heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(MAX_RETRIES))
            return StorageInfo("rdb", shown, storage)
        except (IntegrityError, ProgrammingError):
            # two workers creating Optuna's tables in a fresh database at the same moment: one loses the race
            # on PostgreSQL's catalog (duplicate key / already exists); the tables exist a moment later
            time.sleep(0.5 + attempt)
        except ImportError as exc:
            raise SearchError(f"storage {shown}: database driver missing ({exc}); for PostgreSQL install "
                              "'psycopg[binary]' or use postgresql+psycopg2:// with psycopg2-binary") from None
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise SearchError(f"cannot reach storage {shown}: {first.replace(url, shown)}") from None
    raise SearchError(f"storage {shown}: could not create or open Optuna's tables (other workers kept "
                      "creating them for 20 s)")



@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna's info logging and experimental-feature warnings silenced inside the block."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def load_search_study(study: str, storage: str | None = None, root: Path | str = RESULTS_ROOT
                      ) -> tuple[optuna.Study, StorageInfo]:
    """Open an existing study for ``show``/``export`` (clear error when it does not exist)."""
    info = open_storage(storage, study, root, create=False)
    with quiet_optuna():
        try:
            return optuna.load_study(study_name=study, storage=info.storage), info
        except KeyError:
            names = optuna.get_all_study_names(info.storage)
            raise SearchError(f"no study {study!r} in {info.location}; studies there: "
                              f"{', '.join(names) or 'none'}") from None
