"""``latlab search confirm``: the winner and a baseline retrained at the reference protocol, timed interleaved."""

from __future__ import annotations

import json
import math

import pytest
from search_fixtures import TINY_SPACE

from latlab.errors import SearchError
from latlab.search.confirm import Confirmation, confirm_winner, resolve_protocol, winner_and_baseline
from latlab.search.reference import ReferenceProtocol, matching_reference
from latlab.search.run import run_search
from latlab.search.settings import SearchSettings
from latlab.search.space import arch_hash

PROTOCOL = ReferenceProtocol(epochs=1, imgsz=64, n_train=16, n_val=8, batch=8, seeds=(0, 1))


def _confirmation(**over) -> Confirmation:
    base = dict(study="s", trial=3, baseline="b", map_winner=(0.30, 0.32), map_baseline=(0.25, 0.25), seed_sd=0.02,
                seed_sd_source="hand", latency_ratio=0.75, latency_ci=(0.7, 0.8), winner_ms=7.5, baseline_ms=10.0,
                rounds=10)
    return Confirmation(**(base | over))


def test_verdict_by_hand():
    """gain 0.31 − 0.25 = 0.06 = 3 sd of 0.02: more accurate (≥ 2 sd); ratio 0.75 ≤ 0.8: faster."""
    c = _confirmation()
    assert c.map_gain == pytest.approx(0.06) and c.more_accurate and c.faster and c.dominates
    assert not _confirmation(latency_ratio=0.81).dominates
    assert not _confirmation(map_winner=(0.27, 0.29)).more_accurate  # gain 0.03 = 1.5 sd
    assert "+3.0 seed sd" in c.text() and "dominates b" in c.text()


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A finished 3-trial study on the tiny space (params as the accuracy score: no training)."""
    root = tmp_path_factory.mktemp("confirm")
    s = SearchSettings(mode="constrained", latency_budget_ms=1000.0, n_trials=3, space=TINY_SPACE, imgsz=64,
                       baselines=(), sampler="random", results_root=root / "results", study="c",
                       latency_max_time_s=0.5, accuracy="params")
    run_search(s)
    return root


def test_confirm_retrains_both_resumably_and_judges(study, tmp_path):
    """A fake trainer (winner 0.30/0.31, baseline 0.20/0.22) is called once per (model, seed); a run killed
    after the first training continues with the other three; the sd is pooled over the two models by hand:
    √((0.01²/2 + 0.02²/2) / 2) = 0.011180."""
    winner, base_cfg, _ = winner_and_baseline("c", "yolov5n", results_root=study / "results")
    calls: list[tuple[str, int]] = []
    kill_at = {2}  # the second training is interrupted once

    def trainer(cfg, seed, protocol):
        who = "w" if arch_hash(cfg) == arch_hash(winner["cfg"]) else "b"
        calls.append((who, seed))
        if len(calls) in kill_at:
            kill_at.clear()
            raise KeyboardInterrupt
        return {"map": (0.30 + 0.01 * seed) if who == "w" else (0.20 + 0.02 * seed), "map50": 0.5, "epochs": 1,
                "train_s": 0.1}

    with pytest.raises(KeyboardInterrupt):
        confirm_winner("c", "yolov5n", tmp_path, results_root=study / "results", protocol=PROTOCOL, trainer=trainer,
                       rounds=3)
    res = confirm_winner("c", "yolov5n", tmp_path, results_root=study / "results", protocol=PROTOCOL,
                         trainer=trainer, rounds=3)
    assert res is not None and res.trial == winner["trial"]
    assert sorted(set(calls)) == [("b", 0), ("b", 1), ("w", 0), ("w", 1)] and len(calls) == 5  # one retried
    assert res.map_winner == pytest.approx((0.30, 0.31)) and res.map_baseline == pytest.approx((0.20, 0.22))
    assert res.seed_sd == pytest.approx(math.sqrt((0.01 ** 2 / 2 + 0.02 ** 2 / 2) / 2))
    assert res.more_accurate and res.latency_ci[0] <= res.latency_ratio <= res.latency_ci[1]
    assert res.faster == (res.latency_ratio <= 0.8)
    saved = json.loads((tmp_path / "confirmation.json").read_text())
    assert saved["trial"] == res.trial and saved["dominates"] == res.dominates
    assert base_cfg["nc"] == winner["cfg"]["nc"]


def test_confirm_bad_input(study):
    with pytest.raises(SearchError, match="has no trial 99"):
        winner_and_baseline("c", "yolov5n", results_root=study / "results", trial=99)
    with pytest.raises(SearchError, match="no search journal"):
        winner_and_baseline("nope", "yolov5n", results_root=study / "results")
    with pytest.raises(SearchError, match="pass --reference"):
        resolve_protocol({"train_budget": {"data": "my.yaml", "imgsz": 64}}, None)


def test_shipped_reference_is_found_by_the_studys_data():
    """The quick start's data (shapes4-easy, 64 px) maps to reference v2, the default data at 128 px to v1."""
    assert matching_reference({"data": "builtin", "data_kwargs": {"preset": "shapes4-easy"}, "imgsz": 64}).stem == \
        "reference_v2"
    assert matching_reference({"data": "builtin", "imgsz": 128}).stem == "reference_v1"
    assert matching_reference({"data": "builtin", "imgsz": 96}) is None


def test_versioned_files_sort_by_number(tmp_path):
    """v10 is newer than v9 and v2 (a string sort would put it between v1 and v2); other names are ignored."""
    from latlab.search.reference import versioned_files

    for name in ("reference_v1.csv", "reference_v2.csv", "reference_v9.csv", "reference_v10.csv",
                 "reference_vx.csv", "fidelity_v3.csv"):
        (tmp_path / name).write_text("")
    assert [p.name for p in versioned_files(tmp_path, "reference")] == [
        "reference_v10.csv", "reference_v9.csv", "reference_v2.csv", "reference_v1.csv"]
