"""Board kit: runs in a fresh venv with only onnxruntime + numpy, and imports back to the table format."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from latlab.errors import TableError
from latlab.lut.build import Arch, build_table
from latlab.lut.kit import export_kit, import_kit
from latlab.lut.table import LatencyTable

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

ARCHS = [
    Arch("a", {"nc": 4, "channel_divisor": 8, "anchors": [[10, 13, 16, 30]],
               "backbone": [[-1, 1, "CBRM", [16]], [-1, 1, "Shuffle_Block", [32, 2]], [-1, 1, "MV2Block", [32, 1, 2]]],
               "head": [[-1, 1, "Conv", [16, 1, 1]], [-1, 1, "nn.Upsample", ["None", 2, "nearest"]],
                        [[-1, 0], 1, "Concat", [1]], [[3], 1, "Detect", ["nc", "anchors"]]]}),
    Arch("b", {"nc": 4, "channel_divisor": 8, "backbone": [[-1, 1, "Conv", [16, 3, 2]],
                                                          [-1, 1, "DepSepConv", [32, 2, 3, True]]], "head": []}),
]
KW = dict(archs=ARCHS, imgsz=32, rounds=5, batch=4, calib=2, progress=False)


@pytest.fixture(scope="module")
def kit_venv(tmp_path_factory):
    """A fresh venv with only onnxruntime and numpy (from the package registry)."""
    env = tmp_path_factory.mktemp("kitvenv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    pip = subprocess.run([str(env / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", "onnxruntime",
                          "numpy"], capture_output=True, text=True)
    if pip.returncode:
        pytest.fail(f"could not install onnxruntime + numpy into a fresh venv: {pip.stderr[-2000:]}")
    return env / "bin" / "python"


@pytest.mark.slow
def test_kit_runs_without_torch_and_imports_to_the_same_format(tmp_path, kit_venv):
    kit = tmp_path / "kit"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info = export_kit(kit, **KW)
    assert info.blocks == 9 and info.models == 2  # a: 7 layers, b: 2
    assert (kit / "run_kit.py").read_text() == (Path(__file__).parents[1] / "latlab/lut/kit_runner.py").read_text()
    assert not list(kit.rglob("*.bin"))  # weight values are not shipped
    # the venv really lacks torch and latlab
    probe = subprocess.run([str(kit_venv), "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0
    probe = subprocess.run([str(kit_venv), "-c", "import latlab"], capture_output=True, cwd=tmp_path)
    assert probe.returncode != 0
    # a first run stopped after 3 blocks, then a second run finishes (resumable)
    run = [str(kit_venv), str(kit / "run_kit.py"), "--threads", "1"]
    first = subprocess.run([*run, "--limit", "3"], capture_output=True, text=True, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "6 blocks left" in first.stdout
    results = kit / "results.jsonl"
    with pytest.raises(TableError, match="6 of 9 blocks have no timing"):
        import_kit(results, kit)
    second = subprocess.run(run, capture_output=True, text=True, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resuming: 3 blocks" in second.stdout and "calibration models 2 timed" in second.stdout
    lines = [json.loads(x) for x in results.read_text().splitlines()]
    assert [x["kind"] for x in lines].count("entry") == 9

    imported = import_kit(results, kit, tmp_path / "board.lut.json")
    board = LatencyTable.load(tmp_path / "board.lut.json", backend="onnxruntime", threads=1, imgsz=32)
    assert board.source == "kit" and board.calibration is not None
    assert board.to_dict() == imported.to_dict()
    assert board.fingerprint["torch"] is None and board.versions["onnxruntime"]

    # the same blocks built by latlab itself with the ORT backend: same keys, same fields, same identity
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        built = build_table(tmp_path / "host.lut.json", backend="onnxruntime", **KW).table
    assert set(built.entries) == set(board.entries)
    a, b = built.to_dict(), board.to_dict()
    assert set(a) == set(b)
    for key in built.entries:
        ea, eb = a["entries"][key], b["entries"][key]
        assert set(ea) == set(eb)
        for f in ("type", "part", "fields", "args", "in_shapes", "out_shape", "params", "madds", "mac_bytes"):
            assert ea[f] == eb[f], (key, f)
    assert built.device_key == board.device_key  # same machine, whichever tool measured it
    assert set(a["protocol"]) <= set(b["protocol"]) | {"busy_warnings"}

    # results of another kit are refused
    other = tmp_path / "other.jsonl"
    other.write_text(results.read_text().replace(lines[0]["manifest_sha256"], "0" * 64))
    with pytest.raises(TableError, match="another kit"):
        import_kit(other, kit)
