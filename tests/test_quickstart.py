"""The README's first command end to end, at toy sizes: every step writes its run folder and the report."""

import json

import pandas as pd
import pytest

from latlab.quickstart import QuickstartSettings, run_quickstart


@pytest.mark.slow
def test_quickstart_writes_profile_search_and_report(tmp_path):
    s = QuickstartSettings(imgsz=64, search_imgsz=64, search_trials=1, train_epochs=1, n_train=32, n_val=16,
                           guidelines=False,
                           out=tmp_path / "qs")
    trials = []
    r = run_quickstart(s, on_trial=trials.append)
    assert r.report is not None and r.report.is_file()
    assert (r.root / "report-profile.html").is_file() and (r.root / "report-search.html").is_file()
    assert r.budget_ms is not None and r.budget_ms > 0
    meta = json.loads((r.root / "profile" / "meta.json").read_text())
    assert meta["job"] == "profile" and meta["layers_model"] == "yolov5s-shufflenetv2"

    models = pd.read_csv(r.root / "profile" / "models.csv")
    assert set(models["model"]) == {"yolov5n", "yolov5s-shufflenetv2", "yolov5s-ghost-backbone"}
    search = pd.read_csv(r.root / "search" / "trials.csv")
    # two seed baselines + one search trial, each reported as it finished
    assert search["baseline"].fillna("").astype(bool).sum() == 2
    assert len(search) == 3 and len(trials) == 3
    # one budget, one measurement: the seed that defines the budget is judged by that same number
    seed = search[search["baseline"] == "yolov5s-shufflenetv2"].iloc[0]
    assert bool(seed["feasible"]) and seed["latency_ms"] == r.budget_ms


def test_front_separation_against_a_hand_made_noise_table(tmp_path):
    from latlab.quickstart import front_separation, noise_sd, seed_noise

    noise = pd.DataFrame({"model": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "map": [0.10, 0.12, 0.20, 0.20]})
    # variances 0.0002 and 0 → pooled sd √0.0001 = 0.01
    assert noise_sd(noise) == pytest.approx(0.01)
    trials = pd.DataFrame({"state": ["COMPLETE", "COMPLETE", "COMPLETE", "PRUNED"],
                           "map": [0.05, 0.15, float("nan"), 0.30]})
    sep = front_separation(trials, noise)
    assert sep.map_range == pytest.approx(0.10) and sep.n_trials == 2 and sep.ratio == pytest.approx(10.0)
    assert front_separation(trials, None) is None
    # the shipped measurement is used only for the protocol it was made with
    path = tmp_path / "noise.csv"
    noise.to_csv(path, index=False)
    path.with_suffix(".json").write_text(json.dumps({"protocol": {"imgsz": 64}}))
    assert seed_noise({"imgsz": 64}, path) is not None and seed_noise({"imgsz": 96}, path) is None


def test_seed_placement_ranks_seeds_beside_their_reference():
    from latlab.quickstart import seed_placement

    noise = pd.DataFrame({"model": ["a", "a", "b", "b"], "seed": [0, 1, 0, 1], "map": [0.10, 0.12, 0.20, 0.24]})
    trials = pd.DataFrame({"baseline": ["a", "b", None], "map": [0.30, 0.25, 0.5], "state": ["COMPLETE"] * 3})
    got = seed_placement(trials, noise)
    assert list(got["model"]) == ["b", "a"] and list(got["reference_rank"]) == [1, 2]
    assert list(got["rank"]) == [2, 1]  # this run put them the other way round
    assert got.loc[0, "reference_map"] == pytest.approx(0.22)
    assert got.loc[0, "reference_sd"] == pytest.approx(0.02 * 2**0.5)
