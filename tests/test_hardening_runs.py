"""Run folders (issue 18, finding 3 and the empty-folder part of 9): unique folders even within one second,
an existing ``--name`` refused unless ``--resume``/``--force``, and no empty folder left by a failed command."""

from __future__ import annotations

import threading

import pytest

from latlab import runs
from latlab.cli import main
from latlab.errors import ConfigError
from latlab.runs import new_run_dir


def test_runs_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    monkeypatch.setattr(runs.time, "strftime", lambda fmt: "20250101-120000")
    got: list = []
    threads = [threading.Thread(target=lambda: got.append(new_run_dir("profile", root=tmp_path))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(got)) == 8
    assert sorted(p.name for p in got) == sorted(["20250101-120000", *(f"20250101-120000-{n}" for n in range(2, 9))])
    assert new_run_dir("search/s", root=tmp_path, prefix="export-").name == "export-20250101-120000"


def test_existing_name_refused_unless_resume_or_force(tmp_path):
    first = new_run_dir("train", "exp", tmp_path)
    (first / "best.pt").write_text("weights")
    with pytest.raises(ConfigError, match=r"train/exp: a run of that name exists; pass --resume to continue it, "
                                          r"--force to overwrite it, or choose another --name"):
        new_run_dir("train", "exp", tmp_path)
    assert (first / "best.pt").read_text() == "weights"
    assert new_run_dir("train", "exp", tmp_path, resume=True) == first and (first / "best.pt").exists()
    assert new_run_dir("train", "exp", tmp_path, force=True) == first and not any(first.iterdir())
    with pytest.raises(ConfigError, match="no such run to resume"):
        new_run_dir("train", "other", tmp_path, resume=True)
    assert not (tmp_path / "train" / "other").exists()
    with pytest.raises(ConfigError, match=r"run name '\.\./x': expected a plain folder name"):
        new_run_dir("train", "../x", tmp_path)


def _cli(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def test_train_cli_refuses_a_reused_name_and_leaves_no_empty_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    old = tmp_path / "results" / "train" / "exp"
    old.mkdir(parents=True)
    (old / "best.pt").write_text("weights")
    code, err = _cli(["train", "yolov5n", "--name", "exp", "--epochs", "1"], capsys)
    assert code == 2 and err.count("\n") == 0 and "a run of that name exists" in err, err
    assert (old / "best.pt").read_text() == "weights"
    code, err = _cli(["train", "yolov5n", "--name", "nope", "--resume"], capsys)
    assert code == 2 and "no such run to resume" in err, err
    code, err = _cli(["train", "yolov5n", "--name", "fails", "--epochs", "1", "--data", "missing.yaml"], capsys)
    assert code == 2, err
    assert sorted(p.name for p in (tmp_path / "results" / "train").iterdir()) == ["exp"]
