"""``latlab search dashboard``: optuna-dashboard served on a study's own storage (journal file or RDB URL),
on localhost; its REST API, fetched over HTTP, shows the study and its trials; the handle stops it."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import optuna
import pytest

from latlab.cli import main
from latlab.errors import SearchError
from latlab.search.dashboard import serve_dashboard
from latlab.search.storage import open_storage

pytest.importorskip("optuna_dashboard")

N_TRIALS = 4


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _make_study(root: Path, name: str, storage: str | None) -> None:
    """A study of ``N_TRIALS`` finished trials where ``search run`` would put it."""
    info = open_storage(storage, name, root)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=name, storage=info.storage)
    study.optimize(lambda t: t.suggest_float("x", 0, 1) ** 2, n_trials=N_TRIALS)


@pytest.mark.parametrize("kind", ["journal", "sqlite"])
def test_dashboard_serves_the_study_over_http(kind, tmp_path):
    storage = None if kind == "journal" else f"sqlite:///{tmp_path / 'studies.db'}"
    _make_study(tmp_path, "demo", storage)
    server = serve_dashboard("demo", storage, port=0, root=tmp_path)
    try:
        assert server.url.startswith("http://127.0.0.1:") and server.url.endswith("/dashboard")
        base = server.url.removesuffix("/dashboard")
        summaries = _get(f"{base}/api/studies")["study_summaries"]
        assert [s["study_name"] for s in summaries] == ["demo"]
        detail = _get(f"{base}/api/studies/{summaries[0]['study_id']}")
        assert detail["name"] == "demo" and len(detail["trials"]) == N_TRIALS
        assert all(t["state"] == "Complete" for t in detail["trials"])
    finally:
        server.stop()
    with pytest.raises(urllib.error.URLError):
        _get(f"{base}/api/studies")


def test_unknown_study_and_busy_port_are_one_line_errors(tmp_path, capsys, monkeypatch):
    _make_study(tmp_path, "demo", None)
    with pytest.raises(SearchError, match=r"no study 'other' in .*journal\.log; studies there: demo"):
        serve_dashboard("other", str(tmp_path / "search" / "demo" / "journal.log"), port=0, root=tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SearchError, match=f"cannot serve the dashboard on 127.0.0.1:{port}: .*--port"):
            serve_dashboard("demo", port=port, root=tmp_path)
    assert main(["search", "dashboard", "nope", "--storage", str(tmp_path / "none.log")]) == 2
    assert "no search journal at" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # as if the extra were not installed
    with pytest.raises(SearchError, match=r"needs optuna-dashboard: pip install 'latlab\[dashboard\]'"):
        serve_dashboard("demo", port=0, root=tmp_path)


def test_cli_serves_until_interrupted(tmp_path):
    _make_study(tmp_path, "demo", None)
    journal = tmp_path / "search" / "demo" / "journal.log"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # started as a shell starts a background job: SIGINT ignored (inherited), so Python installs no handler
    # of its own; the dashboard must still stop on SIGINT
    proc = subprocess.Popen([sys.executable, "-m", "latlab.cli", "search", "dashboard", "demo", "--storage",
                             str(journal), "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        deadline = time.monotonic() + 180  # start-up (torch import) on a busy 2-core box
        while True:
            try:
                summaries = _get(f"http://127.0.0.1:{port}/api/studies")["study_summaries"]
                break
            except urllib.error.URLError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
                time.sleep(0.3)
        assert [s["study_name"] for s in summaries] == ["demo"]
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0 and f"127.0.0.1:{port}/dashboard" in out
