"""Machine-speed reference: anchors in every interleaved round, latencies divided by the speed factor."""

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from latlab.profiling.compare import run_interleaved
from latlab.profiling.speed import ANCHOR_PREFIX, anchor_models, cache_dir, speed_factor


def test_first_call_stores_the_reference_then_factor_is_the_geometric_mean_ratio(tmp_path, monkeypatch):
    monkeypatch.setenv("LATLAB_CACHE_DIR", str(tmp_path))
    base = {"a": np.full(20, 2.0), "b": np.full(20, 8.0)}
    assert speed_factor(base, "k") == (1.0, "")
    stored = json.loads((tmp_path / "speed" / "k.json").read_text())["anchor_ms"]
    assert stored == {"a": 2.0, "b": 8.0}
    # a 10 % slower and b 21 % slower: geometric mean sqrt(1.1 * 1.21) = 1.1537
    factor, note = speed_factor({"a": np.full(20, 2.2), "b": np.full(20, 9.68)}, "k")
    assert factor == pytest.approx(math.sqrt(1.1 * 1.21)) and note == ""


def test_stale_reference_is_named_and_corrupt_one_is_replaced(tmp_path, monkeypatch):
    monkeypatch.setenv("LATLAB_CACHE_DIR", str(tmp_path))
    speed_factor({"a": np.full(5, 1.0)}, "k")
    with pytest.warns(RuntimeWarning, match="3.00× its stored reference speed"):
        factor, note = speed_factor({"a": np.full(5, 3.0)}, "k")
    assert factor == pytest.approx(3.0) and "k.json" in note
    (tmp_path / "speed" / "k.json").write_text("{not json")
    assert speed_factor({"a": np.full(5, 3.0)}, "k") == (1.0, "")


def test_anchor_nets_are_identical_in_every_call():
    a, b = anchor_models(), anchor_models()
    assert list(a) == list(b) and all(k.startswith(ANCHOR_PREFIX) for k in a)
    for k in a:
        for pa, pb in zip(a[k].parameters(), b[k].parameters(), strict=True):
            assert torch.equal(pa, pb)


def test_interleaved_run_divides_samples_by_the_factor_and_hides_the_anchors(tmp_path, monkeypatch):
    monkeypatch.setenv("LATLAB_CACHE_DIR", str(tmp_path))
    net = nn.Sequential(nn.Conv2d(3, 32, 3), nn.ReLU(), nn.Conv2d(32, 32, 3))
    x = torch.randn(1, 3, 64, 64)
    first = run_interleaved({"net": net}, x, rounds=20, progress=False, check_busy=False)
    assert first.names == ["net"] and set(first.samples) == {"net"}
    assert first.speed_factor == 1.0  # the first anchored run on this key stores the reference
    ref_file = next((cache_dir() / "speed").glob("*.json"))
    ref = json.loads(ref_file.read_text())
    ref["anchor_ms"] = {k: v / 4 for k, v in ref["anchor_ms"].items()}  # pretend the reference was 4× faster
    ref_file.write_text(json.dumps(ref))
    with pytest.warns(RuntimeWarning, match="stored reference speed"):
        second = run_interleaved({"net": net}, x, rounds=20, progress=False, check_busy=False)
    m = second.measurements["net"]
    assert 2.5 < m.speed_factor < 6.5 and m.speed_factor == second.speed_factor
    assert m.to_row()["speed_factor"] == m.speed_factor and "reference speed" in m.summary()
    assert any("stored reference speed" in w for w in m.warnings)
    # same conditions as the first run (factor 1.0, so raw): the wall-clock value is the scaled one × factor
    assert m.estimate_ms * m.speed_factor == pytest.approx(first.measurements["net"].estimate_ms, rel=0.3)
    raw = run_interleaved({"net": net}, x, rounds=5, progress=False, check_busy=False, speed_reference=False)
    assert raw.speed_factor == 1.0 and raw.measurements["net"].speed_factor == 1.0
