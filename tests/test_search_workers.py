"""Local worker processes on one study (``--workers``): trials shared, none twice; a killed worker's trial
retried by the other; the train device recorded; bad worker counts refused."""

from __future__ import annotations

import fcntl
import os
import signal
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState
from search_fixtures import SMALL_SPACE

from latlab.errors import SearchError
from latlab.search.settings import SearchSettings
from latlab.search.storage import open_storage
from latlab.search.workers import run_workers

pytestmark = pytest.mark.slow  # two spawned worker processes each import torch: ~40 s on 2 busy cores



@pytest.fixture
def lock_path(tmp_path, monkeypatch):
    path = tmp_path / "timing.lock"
    monkeypatch.setenv("LATLAB_TIMING_LOCK", str(path))  # the workers inherit it
    return path


def _settings(tmp_path, data, **over) -> SearchSettings:
    base = dict(mode="pareto", n_trials=6, space=SMALL_SPACE, imgsz=64, data=str(data), baselines=(), sampler="random",
                results_root=tmp_path / "results", study="w", latency_max_time_s=0.3, accuracy="params",
                workers=2, threads=1)
    base.update(over)
    return SearchSettings(**base)


def _trials(tmp_path) -> list[optuna.trial.FrozenTrial]:
    info = open_storage(None, "w", tmp_path / "results")
    try:
        return optuna.load_study(study_name="w", storage=info.storage).get_trials()
    except KeyError:
        return []


def test_bad_worker_counts_are_refused():
    for n in (0, -1):
        with pytest.raises(SearchError, match=f"--workers {n}: expected at least 1"):
            SearchSettings(mode="pareto", workers=n).check()


def test_workers_take_the_train_devices_round_robin_and_cpu_workers_their_threads():
    s = SearchSettings(mode="pareto", train_device="cpu,cpu", threads=3)
    assert s.n_workers == 2 and [s.for_worker(i).worker_device for i in range(3)] == ["cpu"] * 3
    assert s.for_worker(1).estimator_context().threads == 3
    one = SearchSettings(mode="pareto")
    assert one.n_workers == 1 and one.estimator_context().threads is None  # a single worker: torch's choice


def test_two_cpu_workers_finish_a_six_trial_study_with_six_unique_trials(tmp_path, tiny_data, lock_path):
    res = run_workers(_settings(tmp_path, tiny_data))
    trials = _trials(tmp_path)
    assert res.worker_notes == []
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(finished) == len(trials) == 6
    assert sorted(t.number for t in trials) == list(range(6))
    owners = {t.user_attrs["owner_pid"] for t in trials}
    assert len(owners) == 2 and os.getpid() not in owners  # both workers ran trials, the parent none
    assert res.n_run_here == 6 and len(res.trials) == 6
    study = optuna.load_study(study_name="w", storage=open_storage(None, "w", tmp_path / "results").storage)
    assert study.user_attrs["latlab.train_devices"] == ["cpu"] and study.user_attrs["latlab.workers"] == 2


def test_a_killed_workers_trial_is_retried_by_the_other(tmp_path, tiny_data, lock_path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(lock_path, "a+")  # noqa: SIM115  # held across the polling loop, closed in its finally
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # every trial now waits in its timing step, RUNNING
    out: dict = {}
    runner = threading.Thread(target=lambda: out.update(res=run_workers(_settings(tmp_path, tiny_data, n_trials=4))))
    runner.start()
    killed = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and killed is None:
            running = [t for t in _trials(tmp_path) if t.state == TrialState.RUNNING and "cfg" in t.user_attrs]
            if len({t.user_attrs["owner_pid"] for t in running}) == 2:  # both workers are mid-trial
                victim = running[0]
                os.kill(victim.user_attrs["owner_pid"], signal.SIGKILL)
                killed = victim
            time.sleep(0.1)
    finally:
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()
        runner.join(timeout=300)
    assert killed is not None, "never saw both workers mid-trial"
    res = out["res"]
    assert len(res.worker_notes) == 1 and "killed by SIGKILL" in res.worker_notes[0]
    trials = {t.number: t for t in _trials(tmp_path)}
    dead = trials[killed.number]
    assert dead.state == TrialState.FAIL and "worker process died" in dead.user_attrs["note"]
    retries = [t for t in trials.values() if t.user_attrs.get("retry_of") == killed.number]
    assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
    assert retries[0].params == dead.params
    assert sum(t.state == TrialState.COMPLETE for t in trials.values()) == 4
    assert not [t for t in trials.values() if t.state in (TrialState.RUNNING, TrialState.WAITING)]
