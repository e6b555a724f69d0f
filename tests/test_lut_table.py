"""Latency-table file format: round trip, validation errors, calibration fit and accuracy metrics."""

import json

import numpy as np
import pytest
from scipy import stats

from latlab.errors import TableError
from latlab.lut.check import accuracy
from latlab.lut.predict import fit_calibration
from latlab.lut.table import Calibration, Entry, LatencyTable


def _table(**over):
    entries = {
        "Conv(c1=3,c2=8)@1x3x32x32#00000000": Entry("Conv", 0.10, 0.12, 0.02, 0.10, 0.09, 40, madds=110592),
        "Concat(dimension=1)@1x8x8x8+1x8x8x8#11111111": Entry("Concat", 0.01, 0.012, 0.001, 0.01, 0.009, 40),
    }
    kw = dict(backend="torch", threads=1, imgsz=32, estimator="p10",
              fingerprint={"cpu_model": "Test CPU", "machine": "x86_64", "logical_cores": 2},
              versions={"torch": "2.13.0"}, protocol={"engine": "interleaved", "rounds": 40},
              space={"name": "t", "hash": "abc"}, entries=entries,
              calibration=Calibration("linear", {"sum_ms": 1.25, "intercept": 0.05}))
    kw.update(over)
    return LatencyTable(**kw)


def test_round_trip_keeps_everything(tmp_path):
    t = _table()
    path = t.save(tmp_path / "a.lut.json")
    back = LatencyTable.load(path)
    assert back.to_dict() == t.to_dict()
    assert back.checksum == t.checksum
    assert back.identity()["sha256"] == t.checksum
    # calibration: 1.25 * 0.11 + 0.05 by hand
    assert back.calibration.apply(0.11) == pytest.approx(0.1875)


def test_truncated_file_is_named(tmp_path):
    path = _table().save(tmp_path / "a.lut.json")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(TableError, match=r"a\.lut\.json: not valid JSON, the file ends early"):
        LatencyTable.load(path)
    path.write_text("")
    with pytest.raises(TableError, match="empty file"):
        LatencyTable.load(path)


def test_corrupt_value_fails_checksum(tmp_path):
    path = _table().save(tmp_path / "a.lut.json")
    doc = json.loads(path.read_text())
    doc["entries"]["Conv(c1=3,c2=8)@1x3x32x32#00000000"]["estimate_ms"] = 0.2
    path.write_text(json.dumps(doc))
    with pytest.raises(TableError, match="checksum mismatch"):
        LatencyTable.load(path)
    LatencyTable.load(path, verify=False)  # an explicit opt-out still reads it


def test_garbage_and_bad_fields(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"entries": {}, oops}')
    with pytest.raises(TableError, match="is corrupt"):
        LatencyTable.load(path)
    path.write_text('{"format": "something-else"}')
    with pytest.raises(TableError, match="not a latency table"):
        LatencyTable.load(path)
    doc = _table().to_dict()
    doc["schema_version"] = 99
    with pytest.raises(TableError, match="schema 99"):
        LatencyTable.from_dict(doc, "t.json", verify=False)
    doc = _table().to_dict()
    doc["entries"]["Conv(c1=3,c2=8)@1x3x32x32#00000000"]["median_ms"] = -1
    with pytest.raises(TableError, match=r"entry 'Conv.*field 'median_ms' must be a finite number"):
        LatencyTable.from_dict(doc, "t.json", verify=False)
    del doc["entries"]["Conv(c1=3,c2=8)@1x3x32x32#00000000"]["n"]
    with pytest.raises(TableError, match="missing field"):
        LatencyTable.from_dict(doc, "t.json", verify=False)
    doc = _table().to_dict()
    del doc["backend"]
    with pytest.raises(TableError, match=r"missing field.*backend"):
        LatencyTable.from_dict(doc, "t.json", verify=False)
    with pytest.raises(TableError, match="no such latency table"):
        LatencyTable.load(tmp_path / "nope.json")


def test_other_backend_threads_imgsz_rejected(tmp_path):
    path = _table().save(tmp_path / "a.lut.json")
    with pytest.raises(TableError, match="backend 'torch', but 'onnxruntime' was requested"):
        LatencyTable.load(path, backend="onnxruntime")
    with pytest.raises(TableError, match=r"1 thread.*but 4 were requested"):
        LatencyTable.load(path, threads=4)
    with pytest.raises(TableError, match="input size 32, but 64"):
        LatencyTable.load(path, imgsz=64)
    assert LatencyTable.load(path, backend="torch", threads=1, imgsz=32).imgsz == 32


def test_missing_keys_in_order():
    t = _table()
    keys = ["a", "Conv(c1=3,c2=8)@1x3x32x32#00000000", "b", "a"]
    assert t.missing(keys) == ["a", "b"]


def _rows(fn, sums, madds=None):
    madds = madds if madds is not None else [0] * len(sums)
    return [{"sum_ms": s, "madds": m, "mac_bytes": 0, "measured_ms": fn(s, m)} for s, m in zip(sums, madds, strict=True)]


def test_calibration_recovers_exact_relations():
    sums = [1.0, 2.0, 3.5, 5.0, 8.0, 11.0]
    lin = fit_calibration(_rows(lambda s, m: 1.25 * s + 0.3, sums), "linear")
    assert lin.coef["sum_ms"] == pytest.approx(1.25)
    assert lin.coef["intercept"] == pytest.approx(0.3)
    scale = fit_calibration(_rows(lambda s, m: 1.4 * s, sums), "auto")
    assert scale.method == "scale"  # the simplest exact fit wins ties
    assert scale.coef["sum_ms"] == pytest.approx(1.4)
    madds = [1e8, 3e8, 2e8, 6e8, 4e8, 9e8]
    reg = fit_calibration(_rows(lambda s, m: 1.1 * s + 2.0 * m / 1e9 + 0.1, sums, madds), "auto")
    assert reg.method == "regression"
    assert reg.coef["gmadds"] == pytest.approx(2.0)
    assert reg.loo_mape["regression"] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(TableError, match="unknown calibration method"):
        fit_calibration(_rows(lambda s, m: s, sums), "cubic")
    with pytest.raises(TableError, match="at least one model"):
        fit_calibration([], "auto")


def test_accuracy_metrics_by_hand():
    measured = np.array([1.0, 2.0, 3.0, 4.5, 10.0])
    predicted = np.array([1.04, 2.18, 2.73, 4.0, 10.0])
    # relative errors 4 %, 9 %, 9 %, 11.1 %, 0 %
    m = accuracy(predicted, measured)
    assert m["within_5_pct"] == pytest.approx(40.0)
    assert m["within_10_pct"] == pytest.approx(80.0)
    assert m["mape_pct"] == pytest.approx(100 * (0.04 + 0.09 + 0.09 + 0.5 / 4.5 + 0) / 5)
    assert m["spearman"] == pytest.approx(1.0)
    assert m["kendall"] == pytest.approx(stats.kendalltau(predicted, measured).statistic)
