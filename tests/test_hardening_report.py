"""Reports name unreadable inputs (issue 18, finding 10): an empty, corrupt or non-UTF-8 CSV in a run folder is
named on the page and on stderr; the report is written (exit 0) when other tables could be read, and is an
error (exit 2, one line) when no table at all could be read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from latlab.cli import main
from latlab.errors import LatlabError
from latlab.report import build_report
from tests.test_report_fixtures import write_lut_run

BAD = {"empty.csv": (b"", "empty file"),
       "latin1.csv": ("layer,module\n1,caf\xe9\n".encode("latin-1"), "not UTF-8 text"),
       "ragged.csv": (b"layer,estimate_ms\n1,2\n3,4,5,6\n", "not a readable CSV table")}


def _bad_profile_run(root: Path) -> Path:
    run = root / "profile" / "broken"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"job": "profile"}))
    for name, (data, _) in BAD.items():
        (run / name).write_bytes(data)
    return run


def test_unreadable_csvs_are_named_on_the_page_and_on_stderr(tmp_path, capsys):
    write_lut_run(tmp_path)
    run = _bad_profile_run(tmp_path)
    assert main(["report", str(tmp_path)]) == 0  # the latency-table page rendered
    err = capsys.readouterr().err
    page = (tmp_path / "report-profile.html").read_text()
    index = (tmp_path / "report.html").read_text()
    for name, (_, why) in BAD.items():
        assert f"{run / name} could not be read ({why}" in err
        assert str(run / name) in page and why in page and str(run / name) in index
    assert "3 file(s) could not be read and are missing from this page" in page


def test_nothing_readable_is_an_error(tmp_path, capsys):
    run = _bad_profile_run(tmp_path)
    with pytest.raises(LatlabError, match=r"no table of its 1 run\(s\) could be read \(.*empty\.csv: empty file"):
        build_report(tmp_path)
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(run / "latin1.csv") in err.replace("\n", "")
    assert not (tmp_path / "report.html").exists()
