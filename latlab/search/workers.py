"""Several local worker processes on one study: ``latlab search run --workers N``.

Each worker is a separate process (``spawn``: safe with CUDA and torch's thread pools) that runs
:func:`latlab.search.run.run_search` on the same study and storage, Optuna's own distributed model: no
scheduler here, each worker asks the study for its next trial. Worker ``i`` trains on the ``i``-th device of
``--train-device`` (round-robin); CPU workers train with ``--threads`` threads each. The same command on
another host with a PostgreSQL ``--storage`` joins the study. A worker that dies leaves its trial RUNNING
with its pid as owner; the other workers fail it and enqueue it again (:mod:`latlab.search.liveness`).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

import torch

from latlab.errors import LatlabError, SearchError
from latlab.search.estimators.data import context_nc
from latlab.search.export import best_trial, trials_frame
from latlab.search.records import SearchResult, TrialRecord
from latlab.search.run import run_search
from latlab.search.settings import SearchSettings
from latlab.search.storage import load_search_study, quiet_optuna, study_dir

TrialCallback = Callable[[TrialRecord], None]
StartCallback = Callable[[dict[str, Any]], None]


def run_workers(settings: SearchSettings, *, on_trial: TrialCallback | None = None,
                on_start: StartCallback | None = None) -> SearchResult:
    """Run ``settings.n_workers`` workers on the study and wait for them; one worker runs in this process.

    With several, the callbacks run in the worker processes, so they must be picklable (module-level
    functions or instances of module-level classes). A worker that exits abnormally is reported in
    ``worker_notes``; a ``SearchError`` when every worker did.
    """
    s = settings
    s.check()
    n = s.n_workers
    if n == 1:
        return run_search(s, on_trial=on_trial, on_start=on_start)
    t_start = time.perf_counter()
    context_nc(s.estimator_context())  # build the built-in data once here, not in N workers at once
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(s.for_worker(i), on_trial, on_start), name=f"latlab-worker-{i}")
             for i in range(n)]
    try:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
    notes = [_exit_note(i, s.for_worker(i).worker_device, p) for i, p in enumerate(procs) if p.exitcode != 0]
    if len(notes) == n:
        raise SearchError(f"study {s.study_name!r}: all {n} workers failed ({'; '.join(notes)})")
    with quiet_optuna():
        study, info = load_search_study(s.study_name, s.storage, s.results_root)
        df = trials_frame(study)
        pids = {p.pid for p in procs}
        ran = sum(t.user_attrs.get("owner_pid") in pids and t.state.is_finished() for t in study.get_trials())
    return SearchResult(study=s.study_name, storage=info.location, storage_kind=info.kind, mode=s.mode,
                        workdir=study_dir(s.study_name, s.results_root), n_run_here=ran, trials=df,
                        best=best_trial(df, s.mode), wall_s=time.perf_counter() - t_start, worker_notes=notes)


def _worker(s: SearchSettings, on_trial: TrialCallback | None, on_start: StartCallback | None) -> None:
    """One worker process: pin its threads, run the study loop; a user error is one line and exit code 2."""
    if s.train_threads is not None:
        torch.set_num_threads(s.train_threads)
    try:
        run_search(s, on_trial=on_trial, on_start=on_start)
    except LatlabError as exc:
        print(f"error: worker {s.worker} ({s.worker_device}): {exc}", file=sys.stderr, flush=True)
        sys.exit(2)


def _exit_note(index: int, device: str, proc: Any) -> str:
    code = proc.exitcode
    how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
    return f"worker {index} ({device}, pid {proc.pid}) {how}"
