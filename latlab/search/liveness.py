"""Owner liveness and retry: a trial records the process that runs it; trials of dead processes are failed
and enqueued again (``retry_of``), so re-running an interrupted command resumes the study."""

from __future__ import annotations

import os
import socket
from datetime import datetime
from typing import Any

import optuna
import psutil
from optuna.trial import FrozenTrial, TrialState

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
        storage = study._storage
        try:
            storage.set_trial_user_attr(t._trial_id, "note", "worker process died during the trial")
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, KeyError):
            continue
        failed.append(t.number)
        _enqueue_retry(study, t)
    return failed


def _enqueue_retry(study: optuna.Study, t: FrozenTrial) -> None:
    """Enqueue ``t``'s parameters again, up to ``MAX_RETRIES`` times per original trial."""
    history = [*t.user_attrs.get("retry_history", []), t.number]
    if len(history) > MAX_RETRIES:
        return
    keep = {k: v for k, v in t.user_attrs.items() if k == "baseline"}
    study.enqueue_trial(dict(t.params), user_attrs={**keep, "retry_of": history[0], "retry_history": history})

