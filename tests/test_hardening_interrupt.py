"""Ctrl-C during ``latlab search run`` (issue 18, finding 9): SIGINT mid-trial stops the search with one line and
exit code 130, no traceback; the running trial is failed with a note and enqueued again (as for a worker that
died), and ``--resume`` finishes it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from latlab.detection.data import make_dataset
from tests.search_fixtures import TINY_SPACE

pytestmark = pytest.mark.slow


def _trials(journal, study):
    try:
        return optuna.load_study(study_name=study, storage=JournalStorage(JournalFileBackend(str(journal)))
                                 ).get_trials()
    except (KeyError, ValueError):
        return []


def test_sigint_mid_trial_stops_cleanly_and_the_trial_is_retried(tmp_path):
    data = make_dataset(imgsz=64, n_train=16, n_val=8, root=tmp_path / "data")
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    args = [sys.executable, "-m", "latlab.cli", "search", "run", "--mode", "constrained", "--latency-budget",
            "1000ms", "--trials", "3", "--sampler", "random", "--space", str(space), "--data", str(data),
            "--baselines", "", "--imgsz", "64", "--epochs", "1", "--batch", "8", "--study", "i"]
    env = {**os.environ, "LATLAB_TIMING_LOCK": str(tmp_path / "timing.lock"), "PYTHONUNBUFFERED": "1"}
    journal = tmp_path / "results" / "search" / "i" / "journal.log"
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            running = [t for t in (_trials(journal, "i") if journal.exists() else [])
                       if t.state == TrialState.RUNNING and "cfg" in t.user_attrs]
            if running:
                os.kill(proc.pid, signal.SIGINT)
                stopped = running[0].number
                break
            time.sleep(0.05)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert stopped is not None, "never caught a trial mid-run"
    assert proc.returncode == 130, out + err
    assert "Traceback" not in out + err
    assert err.strip().splitlines() == [
        f"error: study 'i': interrupted by Ctrl-C; trial {stopped} enqueued again; run the same command with "
        "--resume to continue"]
    by_num = {t.number: t for t in _trials(journal, "i")}
    assert by_num[stopped].state == TrialState.FAIL
    assert by_num[stopped].user_attrs["note"] == "interrupted by Ctrl-C (SIGINT) during the trial"
    retry = [t for t in by_num.values() if t.user_attrs.get("retry_of") == stopped]
    assert len(retry) == 1 and retry[0].state == TrialState.WAITING
    assert retry[0].system_attrs["fixed_params"] == by_num[stopped].params

    again = subprocess.run([*args[:args.index("--trials") + 1], "1", *args[args.index("--trials") + 2:],
                            "--resume"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert again.returncode == 0, again.stdout + again.stderr
    done = {t.number: t for t in _trials(journal, "i")}
    assert done[retry[0].number].state == TrialState.COMPLETE
    assert done[retry[0].number].params == by_num[stopped].params
