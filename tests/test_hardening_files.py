"""Hostile files (issue 18, findings 1 and 2): a board kit's manifest cannot make the runner write outside
the kit, a corrupt manifest is one error line, and every append-only resumable file (LUT ``.partial``, kit
``results.jsonl``, the search's Optuna journal) survives a kill mid-write: the torn last line is cut before the
next append and every earlier record is kept."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest

from latlab.appendfile import append_line, append_lines, repair_tail
from latlab.errors import SearchError, TableError
from latlab.lut import kit_runner
from latlab.lut.build import Journal
from latlab.lut.kit import _read_results, import_kit
from latlab.lut.table import Entry
from latlab.search.storage import load_search_study, open_storage

RUNNER = Path(kit_runner.__file__)
PROTOCOL = {"rounds": 2, "batch": 1, "estimator": "p10", "warmup_rounds": 0}


def _tear(path: Path, keep_of_last: int = 7) -> None:
    """Simulate a kill mid-write: the last record loses its end (and its newline)."""
    data = path.read_bytes()
    last = data[:-1].rfind(b"\n") + 1
    path.write_bytes(data[:last + keep_of_last])


def _kit(tmp_path: Path, blocks: object, **extra: object) -> Path:
    kit = tmp_path / "kit"
    (kit / "blocks").mkdir(parents=True)
    manifest = {"format": "latlab-lut-kit", "imgsz": 32, "protocol": PROTOCOL, "blocks": blocks, **extra}
    (kit / "manifest.json").write_text(json.dumps(manifest))
    return kit


def _run_kit(kit: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUNNER), "--kit", str(kit), *args], capture_output=True, text=True,
                          timeout=120)


# ------------------------------------------------------------------------------- finding 1: kit manifest
@pytest.mark.parametrize("weights_file, block_file", [
    ("../../victim.txt", "blocks/x.onnx"),   # the weight file climbs out of the kit
    ("x.bin", "../victim.onnx"),              # the block file does
])
def test_kit_runner_refuses_paths_outside_the_kit_before_writing(tmp_path, weights_file, block_file):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    kit = _kit(tmp_path, [{"key": "k", "file": block_file, "inputs": [{"name": "x", "shape": [1, 3, 8, 8]}],
                           "weights": {"file": weights_file, "floats": 64}}])
    res = _run_kit(kit)
    assert res.returncode == 1
    err = res.stderr.strip()
    assert err.count("\n") == 0 and "points outside the kit folder" in err and "Traceback" not in err, err
    assert victim.read_text() == "precious"
    assert not (kit / "results.jsonl").exists()  # nothing written before the check


def test_kit_runner_refuses_an_absolute_path(tmp_path):
    victim = tmp_path / "victim.onnx"
    victim.write_text("precious")
    kit = _kit(tmp_path, [{"key": "k", "file": str(victim), "inputs": [], "weights": None}])
    res = _run_kit(kit)
    assert res.returncode == 1 and "is an absolute path" in res.stderr and res.stderr.strip().count("\n") == 0
    assert victim.read_text() == "precious" and not (kit / "results.jsonl").exists()


def test_kit_weight_file_must_be_a_plain_bin_name(tmp_path):
    kit = _kit(tmp_path, [{"key": "k", "file": "blocks/x.onnx", "inputs": [],
                           "weights": {"file": "manifest.json", "floats": 1}}])
    with pytest.raises(kit_runner.KitError, match=r"blocks\[0\]\.weights\.file: expected a plain NAME\.bin"):
        kit_runner.read_manifest(kit)


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "expected a latlab kit manifest"),
    (json.dumps({"format": "latlab-lut-kit", "protocol": PROTOCOL, "blocks": 5}), r"blocks: expected a list"),
    (json.dumps({"format": "latlab-lut-kit", "protocol": {**PROTOCOL, "rounds": "3"}, "blocks": []}),
     r"protocol\.rounds: expected an integer >= 1"),
    (json.dumps({"format": "latlab-lut-kit", "protocol": PROTOCOL,
                 "blocks": [{"key": 1, "file": "blocks/a.onnx", "inputs": []}]}), r"blocks\[0\]\.key: expected a str"),
])
def test_corrupt_kit_manifest_is_one_line(tmp_path, text, match):
    kit = tmp_path / "kit"
    kit.mkdir()
    (kit / "manifest.json").write_text(text)
    res = _run_kit(kit)
    err = res.stderr.strip()
    assert res.returncode == 1 and err.startswith("error: ") and err.count("\n") == 0, err
    with pytest.raises(TableError, match=match):  # the host side reads it through the same checks
        import_kit(kit / "results.jsonl", kit)


# ------------------------------------------------------------------------- finding 2: torn tails
def test_append_lines_cut_a_torn_tail_first(tmp_path):
    p = tmp_path / "r.csv"
    append_lines(p, ["1,a", "2,b"], header="n,x")
    with p.open("a") as fh:
        fh.write("3,c-torn")
    append_line(p, "4,d", "n,x")
    assert p.read_text().splitlines() == ["n,x", "1,a", "2,b", "4,d"]
    p.write_bytes(b"no newline at all")  # a torn first line: everything goes, nothing else is touched
    assert repair_tail(p) and p.read_bytes() == b""


def _entry(ms: float) -> Entry:
    return Entry(type="Conv", estimate_ms=ms, median_ms=ms, iqr_ms=0.0, p10_ms=ms, min_ms=ms, n=5)


def test_lut_partial_survives_a_torn_tail_then_append(tmp_path):
    j = Journal(tmp_path / "t.lut.json.partial")
    j.start({"backend": "torch"})
    j.add_entries([("a", _entry(1.0)), ("b", _entry(2.0))])
    j.add_entries([("c", _entry(3.0))])
    _tear(j.path)
    header, entries, _ = Journal(j.path).read()  # the resume reads past the torn tail ...
    assert set(entries) == {"a", "b"}
    Journal(j.path).add_entries([("c", _entry(3.5)), ("d", _entry(4.0))])  # ... and appends
    header, entries, _ = Journal(j.path).read()
    assert header == {"backend": "torch"} and set(entries) == {"a", "b", "c", "d"}
    assert entries["c"].estimate_ms == 3.5


def test_kit_results_survive_a_torn_tail_then_append(tmp_path):
    out = tmp_path / "results.jsonl"
    kit_runner.append(out, [{"kind": "header", "format": kit_runner.RESULTS_FORMAT, "manifest_sha256": "x"}])
    kit_runner.append(out, [{"kind": "entry", "key": k, "estimate_ms": 1.0} for k in ("a", "b", "c")])
    _tear(out)
    _, done, _ = kit_runner.read_done(out)
    assert done == {"a", "b"}
    kit_runner.append(out, [{"kind": "entry", "key": "c", "estimate_ms": 1.0}])
    _, done, _ = kit_runner.read_done(out)
    assert done == {"a", "b", "c"}
    _, entries, _ = _read_results(out)  # the host side reads it too
    assert set(entries) == {"a", "b", "c"}


def _study_with_trials(tmp_path: Path, n: int) -> Path:
    info = open_storage(None, "s", tmp_path)
    study = optuna.create_study(study_name="s", storage=info.storage)
    for i in range(n):
        study.enqueue_trial({"x": i})
        t = study.ask()
        t.suggest_int("x", 0, 10)
        study.tell(t, float(i))
    return Path(info.location)


def test_optuna_journal_torn_tail_is_repaired_with_a_backup(tmp_path):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    journal = _study_with_trials(tmp_path, 3)
    whole = journal.read_bytes()
    _tear(journal)
    torn = journal.read_bytes()
    study, _ = load_search_study("s", root=tmp_path)  # opening repairs the tail (backup first)
    assert (journal.parent / "journal.log.bak").read_bytes() == torn
    assert journal.read_bytes() == whole[:whole[:-1].rfind(b"\n") + 1]
    t = study.ask()  # the next record starts on a line of its own
    study.tell(t, 9.0)
    again, _ = load_search_study("s", root=tmp_path)
    values = [x.value for x in again.get_trials() if x.value is not None]
    assert values[:2] == [0.0, 1.0] and values[-1] == 9.0  # every earlier record kept


def test_garbage_line_in_optuna_journal_is_one_line_error(tmp_path):
    journal = _study_with_trials(tmp_path, 2)
    lines = journal.read_bytes().split(b"\n")
    lines.insert(2, b"\xff\xfe garbage {")
    journal.write_bytes(b"\n".join(lines))
    with pytest.raises(SearchError, match=r"journal.log: line 3 is not an Optuna journal record"):
        load_search_study("s", root=tmp_path)
