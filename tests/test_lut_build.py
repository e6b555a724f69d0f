"""Table build (resumable), prediction (sum + calibration, on-the-fly timing, clear errors), space coverage."""

import json
import warnings

import pytest

from latlab.errors import TableError
from latlab.lut.build import Arch, build_table
from latlab.lut.keys import model_units
from latlab.lut.predict import LatencyPredictor, predict
from latlab.lut.table import LatencyTable
from latlab.ops.builder import build_model
from latlab.search.coverage import covering_points, enumerate_space, sample_archs
from latlab.search.space import load_space

A = {"nc": 4, "channel_divisor": 8, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 2, "Shuffle_Block", [16, 1]],
                                                  [-1, 1, "MV2Block", [16, 2, 2]]], "head": []}
B = {"nc": 4, "channel_divisor": 8, "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Shuffle_Block", [16, 2]],
                                                  [-1, 1, "DepSepConv", [32, 1]]], "head": []}
C = {"nc": 4, "channel_divisor": 8, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "MV2Block", [24, 2, 3]]],
     "head": []}
FAST = dict(imgsz=32, rounds=5, batch=3, progress=False)

TINY_SPACE = {
    "name": "tiny", "nc": 4, "channel_divisor": 8,
    "stem": {"type": ["CBRM", "Conv"], "width": [16]},
    "stages": [{"name": "P3", "block": ["shufflenetv2", "mobilenetv2"], "depth": [1, 2], "width": [16, 32],
                "expansion": [2, 4]},
               {"name": "P4", "block": ["shufflenetv2", "c3"], "depth": [1, 2], "width": [32, 48]},
               {"name": "P5", "block": ["pplcnet"], "depth": [1], "width": [64], "se": [False, True]}],
    "sppf": [False, True], "neck": {"width": [16], "depth": [1]},
}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="machine is busy", category=RuntimeWarning)
        yield


def _distinct(cfgs, imgsz=32):
    return {u.key for c in cfgs for u in model_units(build_model(c), imgsz)}


def test_build_is_resumable_and_predicts(tmp_path):
    out = tmp_path / "t.lut.json"
    archs = [Arch("a", A), Arch("b", B)]
    want = _distinct([A, B])
    assert len(want) == 6  # A: Conv 3→16, Shuffle s1 (two copies, one key), MV2; B: Conv 3→8, Shuffle s2, DepSepConv
    first = build_table(out, archs=archs, calib=2, limit=2, **FAST)
    assert not first.complete and first.timed == 2
    partial = out.with_name(out.name + ".partial")
    assert partial.exists()
    # a build killed while writing leaves a cut last line: it is ignored on resume
    with open(partial, "a") as fh:
        fh.write('{"kind": "entry", "key": "cut')
    second = build_table(out, archs=archs, calib=2, **FAST)
    assert second.complete and second.resumed == 2 and second.timed == len(want) - 2
    assert not partial.exists()
    table = LatencyTable.load(out, backend="torch", threads=1, imgsz=32)
    assert set(table.entries) == want
    assert table.calibration is not None and len(table.calibration.models) == 2
    e = next(iter(table.entries.values()))
    assert e.n == 5 and e.iqr_ms >= 0 and e.min_ms <= e.estimate_ms <= e.median_ms + e.iqr_ms + 1e-9
    # prediction = calibration(sum of the unit entries), every copy of a stacked layer counted
    p = predict(A, out)
    units = model_units(build_model(A), 32)
    assert len(p.units) == len(units) == 4
    s = sum(table.entries[u.key].estimate_ms for u in units)
    assert p.sum_ms == pytest.approx(s)
    madds = sum(table.entries[u.key].madds for u in units)
    assert p.predicted_ms == pytest.approx(table.calibration.apply(s, madds, p.mac_bytes))
    # Conv 3→8, k3 s2 at 32 px: 16·16·8 outputs × 3·9 = 55 296 madds; params 8·3·9 + BN 2·8 = 232 (by hand)
    conv = next(k for k in table.entries if k.startswith("Conv(c1=3,c2=8,"))
    assert (table.entries[conv].madds, table.entries[conv].params) == (55296, 232)
    # a different setting refuses to resume into the same file's partial state
    build_table(out, archs=[Arch("c", C)], calib=0, limit=0, fresh=True, **FAST)
    with pytest.raises(TableError, match=r"partial build with other settings.*rounds"):
        build_table(out, archs=[Arch("c", C)], calib=0, imgsz=32, rounds=7, batch=3, progress=False)


def test_missing_blocks_measured_here_or_clear_error(tmp_path):
    out = tmp_path / "t.lut.json"
    build_table(out, archs=[Arch("a", A)], calib=1, **FAST)
    before = len(LatencyTable.load(out).entries)
    with pytest.raises(TableError, match=r"1 block\(s\) of this model are not in the table.*MV2Block\(c1=16,c2=24"):
        predict(C, out, on_missing="error")
    # same device: the missing blocks are timed now with the table's protocol, and can be saved
    p = predict(C, out, save_measured=True)
    assert len(p.measured_now) == 1 and p.units["measured_now"].sum() == 1
    assert len(LatencyTable.load(out).entries) == before + 1
    # another device: no timing, a clear error naming the machine
    doc = json.loads(out.read_text())
    doc["fingerprint"]["cpu_model"] = "Cortex-A76 (board)"
    moved = LatencyTable.from_dict(doc, "board.lut.json", verify=False)
    with pytest.raises(TableError, match=r"not the one the table was built on.*Cortex-A76"):
        LatencyPredictor(moved).predict(B)
    with pytest.raises(TableError, match="backend 'torch', but 'onnxruntime'"):
        LatencyPredictor(out, backend="onnxruntime")


@pytest.mark.slow  # builds ~40 models
def test_covering_points_reach_every_unit_of_the_space():
    sp = load_space(TINY_SPACE)
    points = covering_points(sp)
    assert len(points) < sp.size
    covered = enumerate_space(sp, 64, verify=0, progress=False)
    sampled = {u.key for a in sample_archs(sp, 25, seed=3) for u in model_units(build_model(a.cfg), 64)}
    assert sampled <= set(covered.units)
    # every (stage block, input width) pair appears: the P4 stage (input 8x8 at 64 px) reads P3 widths 16 and 32
    for typ in ("Shuffle_Block", "Conv"):
        c_in = {u.in_shapes[0][1] for u in covered.units.values() if u.type == typ
                and u.in_shapes[0][2] == 8 and u.fields["stride"] == 2}
        assert c_in == {16, 32}, typ
