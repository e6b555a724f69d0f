"""Owner liveness and retry: a trial records the process that runs it; trials of dead processes are failed
and enqueued again (``retry_of``), so re-running an interrupted command resumes the study.

Ctrl-C takes the same path: inside :func:`stop_on_sigint` SIGINT raises :class:`StopRequested`, which is not a
``KeyboardInterrupt`` (Optuna records a trial interrupted by one as a plain FAIL), so the running trial stays
RUNNING until this process fails it with a note and enqueues it again, then the command ends with one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

from latlab.errors import Interrupted

MAX_RETRIES = 3
OWNERLESS_GRACE_S = 120.0
HEARTBEAT_S = 30  # RDB heartbeat interval (Optuna's own stale-trial detection across hosts)


def owner() -> dict[str, Any]:
    """This process as a trial's owner: host, pid and process start time (pids are reused)."""
    proc = psutil.Process()
    return {"owner_host": socket.gethostname(), "owner_pid": os.getpid(), "owner_start": proc.create_time()}


def owner_alive(attrs: dict[str, Any]) -> bool:
    """The owner process still runs (same pid and start time, not a zombie)."""
    pid, start = attrs.get("owner_pid"), attrs.get("owner_start")
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start is None or abs(proc.create_time() - float(start)) < 1.0
    except (psutil.Error, TypeError, ValueError):
        return False


def recover_dead_trials(study: optuna.Study) -> list[int]:
    """Fail RUNNING trials whose owner process on this host is gone and enqueue them again.

    A trial without owner attributes (killed between creation and its first write) is treated the same
    once it is ``OWNERLESS_GRACE_S`` old. Trials owned by other hosts are left to the RDB heartbeat.
    Returns the numbers of the trials failed here.
    """
    host = socket.gethostname()
    failed = []
    now = datetime.now()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if "owner_host" in attrs:
            if attrs["owner_host"] != host or owner_alive(attrs):
                continue
        elif t.datetime_start is None or (now - t.datetime_start).total_seconds() < OWNERLESS_GRACE_S:
            continue
        if _fail_and_retry(study, t, "worker process died during the trial"):
            failed.append(t.number)
    return failed


def _fail_and_retry(study: optuna.Study, t: FrozenTrial, note: str) -> bool:
    """Fail the RUNNING trial ``t`` with ``note`` and enqueue its parameters again; False if it had finished."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(t._trial_id, "note", note)
        storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
        return False
    _enqueue_retry(study, t)
    return True


class StopRequested(BaseException):
    """SIGINT inside :func:`stop_on_sigint`: not an ``Exception`` (no ``catch=`` swallows it) and not a
    ``KeyboardInterrupt`` (which Optuna turns into a plain failed trial)."""


def _raise_stop(signum: int, frame: Any) -> None:
    raise StopRequested


@contextlib.contextmanager
def stop_on_sigint(storage: Any, study_name: str) -> Iterator[None]:
    """Run the block with Ctrl-C (SIGINT) stopping it cleanly: this process's RUNNING trials of ``study_name``
    are failed with a note and enqueued again (as for a worker that died), then :class:`~latlab.errors.Interrupted`
    (exit code 130) is raised. Outside the main thread the block runs unchanged."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _raise_stop)
    try:
        yield
    except StopRequested:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the clean-up short
        retried = release_own_trials(storage, study_name, "interrupted by Ctrl-C (SIGINT) during the trial")
        which = f"trial {', '.join(map(str, retried))} enqueued again; " if retried else ""
        raise Interrupted(f"study {study_name!r}: interrupted by Ctrl-C; {which}run the same command with "
                          "--resume to continue") from None
    finally:
        signal.signal(signal.SIGINT, previous)


def release_own_trials(storage: Any, study_name: str, note: str) -> list[int]:
    """Fail the RUNNING trials this process owns in ``study_name`` and enqueue them again; their numbers."""
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except KeyError:  # stopped before the study existed
        return []
    me = owner()
    released = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = t.user_attrs
        if (attrs.get("owner_host"), attrs.get("owner_pid")) != (me["owner_host"], me["owner_pid"]):
            continue
        if _fail_and_retry(study, t, note):
            released.append(t.number)
    return released


def _enqueue_retry(study: optuna.Study, t: FrozenTrial) -> None:
    """Enqueue ``t``'s parameters again, up to ``MAX_RETRIES`` times per original trial."""
    history = [*t.user_attrs.get("retry_history", []), t.number]
    if len(history) > MAX_RETRIES:
        return
    keep = {k: v for k, v in t.user_attrs.items() if k == "baseline"}
    study.enqueue_trial(dict(t.params), user_attrs={**keep, "retry_of": history[0], "retry_history": history})

