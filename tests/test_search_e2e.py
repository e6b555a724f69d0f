"""End-to-end searches (slow): a tiny study with a baseline and export, SIGKILL then resume, and two worker
processes sharing one study on a real PostgreSQL server."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from search_fixtures import SMALL_SPACE

from latlab.detection.data import make_dataset
from latlab.ops.builder import build_model
from latlab.search.export import export_study
from latlab.search.space import arch_hash, load_space
from latlab.search.study import SearchSettings, load_search_study, open_storage, run_search

pytestmark = pytest.mark.slow



@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return make_dataset(imgsz=64, n_train=16, n_val=8, root=tmp_path_factory.mktemp("data"))


@pytest.fixture
def space_file(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SMALL_SPACE))
    return path


def _cli(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "latlab.cli", "search", *args]


def _env(tmp_path: Path) -> dict:
    return {**os.environ, "LATLAB_TIMING_LOCK": str(tmp_path / "timing.lock"), "PYTHONUNBUFFERED": "1"}


def test_tiny_constrained_search_with_baseline_and_export(tmp_path, data_dir, space_file):
    s = SearchSettings(mode="constrained", latency_budget_ms=1000.0, n_trials=4, space=space_file, imgsz=64,
                       epochs=1, data=str(data_dir), baselines=("yolov5n",), sampler="tpe",
                       results_root=tmp_path / "results", study="e2e", latency_max_time_s=1.0, batch=8)
    seen = []
    res = run_search(s, on_trial=seen.append)
    df = res.trials
    assert len(seen) == len(df) == 5
    base = df[df["baseline"] == "yolov5n"]
    assert len(base) == 1 and base["state"].iloc[0] == "COMPLETE" and base["map"].notna().all()
    search = df[df["baseline"] == ""]
    assert (search["state"].isin(["COMPLETE", "PRUNED"])).sum() == 4
    assert search["feasible"].all() and (search["latency_ms"] > 0).all()
    assert (search["params"] > 0).all() and (search["madds"] > 0).all() and (search["mac_bytes"] > 0).all()
    assert res.best is not None and df["best"].sum() == 1
    st, _ = load_search_study("e2e", str(tmp_path / "results" / "search" / "e2e" / "journal.log"))
    assert st.user_attrs["latlab.hardware_key"] and st.user_attrs["latlab.mode"] == "constrained"
    out = export_study(st, tmp_path / "export")
    trials = pd.read_csv(out / "trials.csv")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["n_trials"] == 5 and meta["study"] == "e2e" and "fingerprint" in meta
    # what the search page's trust block looks the shipped fidelity table up by
    space = load_space(space_file)
    assert meta["space_hash"] == space.space_hash and meta["choices_hash"] == space.choices_hash
    assert (out / "pareto.csv").exists()
    for _, row in trials.iterrows():
        cfg = yaml.safe_load((out / row["yaml_path"]).read_text())
        assert arch_hash(cfg) == row["arch_hash"]
    first = trials[trials["baseline"].isna()].iloc[0]
    model = build_model(str(out / first["yaml_path"]))
    assert sum(p.numel() for p in model.parameters()) == first["params"]
    shown = subprocess.run(_cli(["show", "e2e", "--json"]), cwd=tmp_path,
                           capture_output=True, text=True, env=_env(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert len(json.loads(shown.stdout)) == 5


def _trials(journal: Path, study: str) -> list[optuna.trial.FrozenTrial]:
    info = open_storage(str(journal), study, create=False)
    try:
        return optuna.load_study(study_name=study, storage=info.storage).get_trials()
    except KeyError:
        return []


def test_sigkill_mid_trial_then_resume(tmp_path, data_dir, space_file):
    args = ["run", "--mode", "constrained", "--latency-budget", "1000ms", "--trials", "4", "--sampler", "random",
            "--space", str(space_file), "--data", str(data_dir), "--baselines", "yolov5n", "--imgsz", "64",
            "--epochs", "1", "--batch", "8", "--study", "k"]
    journal = tmp_path / "results" / "search" / "k" / "journal.log"
    proc = subprocess.Popen(_cli(args), cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    killed = None
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            trials = _trials(journal, "k") if journal.exists() else []
            done = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE and "baseline" not in t.user_attrs]
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING and "cfg" in t.user_attrs]
            if done and running:
                os.kill(proc.pid, signal.SIGKILL)
                killed = running[0].number
                break
            time.sleep(0.05)
    finally:
        if proc.poll() is None and killed is None:
            proc.kill()
        proc.wait()
    assert killed is not None, f"never caught a trial mid-run; output:\n{proc.stdout.read()}"
    before = {t.number: (t.state, t.values, t.user_attrs.get("arch")) for t in _trials(journal, "k")
              if t.state == optuna.trial.TrialState.COMPLETE}
    again = subprocess.run(_cli([*args, "--resume"]), cwd=tmp_path, env=_env(tmp_path),
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stdout + again.stderr
    after = _trials(journal, "k")
    by_num = {t.number: t for t in after}
    for n, (state, values, arch) in before.items():  # finished trials kept as they were
        assert (by_num[n].state, by_num[n].values, by_num[n].user_attrs.get("arch")) == (state, values, arch)
    assert by_num[killed].state == optuna.trial.TrialState.FAIL
    assert "worker process died" in by_num[killed].user_attrs["note"]
    retries = [t for t in after if t.user_attrs.get("retry_of") == killed]
    assert len(retries) == 1 and retries[0].state == optuna.trial.TrialState.COMPLETE
    assert retries[0].params == by_num[killed].params
    assert not [t for t in after if t.state in (optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.WAITING)]
    finished = [t for t in after if t.state.is_finished() and t.state != optuna.trial.TrialState.FAIL]
    assert sum("baseline" not in t.user_attrs for t in finished) == 4
    assert sum("baseline" in t.user_attrs for t in finished) == 1
    assert len([t for t in after if t.state == optuna.trial.TrialState.FAIL]) == 1


# ------------------------------------------------------------------------------------------ PostgreSQL
def _pg_bindir() -> str | None:
    for d in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.path.exists(f"{d}/initdb") and os.path.exists(f"{d}/pg_ctl"):
            return d
    found = shutil.which("pg_ctl")
    return os.path.dirname(found) if found and shutil.which("initdb") else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres_url():
    """A private PostgreSQL cluster on a free local port (as the postgres user when we are root)."""
    bindir = _pg_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found; install Debian's 'postgresql'")
    base = Path(tempfile.mkdtemp(prefix="latlab-pg-"))
    os.chmod(base, 0o755)
    data, port = base / "data", _free_port()
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server")
        os.chown(base, pw.pw_uid, pw.pw_gid)
        prefix = ["runuser", "-u", "postgres", "--"] if shutil.which("runuser") else []
        if not prefix:
            pytest.skip("running as root without runuser to start postgres as the postgres user")

    def run(*cmd: str) -> None:
        subprocess.run([*prefix, *cmd], check=True, capture_output=True, cwd=base)

    run(f"{bindir}/initdb", "-D", str(data), "-A", "trust", "-U", "latlab", "--no-sync")
    run(f"{bindir}/pg_ctl", "-D", str(data), "-l", str(base / "log"), "-w", "-o",
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        run(f"{bindir}/createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "latlab", "search")
        yield f"postgresql+psycopg2://latlab@127.0.0.1:{port}/search"
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            run(f"{bindir}/pg_ctl", "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(base, ignore_errors=True)


def test_two_workers_share_a_postgres_study(tmp_path, data_dir, space_file, postgres_url):
    n = 4
    args = ["run", "--mode", "pareto", "--trials", str(n), "--space", str(space_file),  # --sampler auto: GP
            "--data", str(data_dir), "--baselines", "", "--imgsz", "64", "--epochs", "1", "--batch", "8",
            "--storage", postgres_url, "--study", "shared"]
    procs = [subprocess.Popen(_cli(args), cwd=tmp_path, env=_env(tmp_path), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=400)[0] for p in procs]
    for p, out in zip(procs, outs, strict=True):
        assert p.returncode == 0, out
    study = optuna.load_study(study_name="shared", storage=postgres_url)
    trials = study.get_trials()
    assert len(trials) == n
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.number for t in trials) == list(range(n))
    assert {t.user_attrs["owner_pid"] for t in trials} == {p.pid for p in procs}
    assert len(study.directions) == 2 and study.user_attrs["latlab.latency_kind"] == "measured"
