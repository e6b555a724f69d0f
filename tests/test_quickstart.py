"""The README's first command end to end, at toy sizes: every step writes its run folder and the report."""

import json

import pytest

from latlab.quickstart import QuickstartSettings, run_quickstart


@pytest.mark.slow
def test_quickstart_writes_profile_search_and_report(tmp_path):
    s = QuickstartSettings(imgsz=64, search_trials=1, train_epochs=1, n_train=32, n_val=16, guidelines=False,
                           out=tmp_path / "qs")
    trials = []
    r = run_quickstart(s, on_trial=trials.append)
    assert r.report is not None and r.report.is_file()
    assert (r.root / "report-profile.html").is_file() and (r.root / "report-search.html").is_file()
    assert r.budget_ms is not None and r.budget_ms > 0
    meta = json.loads((r.root / "profile" / "meta.json").read_text())
    assert meta["job"] == "profile" and meta["layers_model"] == "yolov5s-shufflenetv2"
    import pandas as pd

    models = pd.read_csv(r.root / "profile" / "models.csv")
    assert set(models["model"]) == {"yolov5n", "yolov5s-shufflenetv2", "yolov5s-ghost-backbone"}
    search = pd.read_csv(r.root / "search" / "trials.csv")
    # three seed baselines + one search trial, each reported as it finished
    assert search["baseline"].fillna("").astype(bool).sum() == 3
    assert len(search) == 4 and len(trials) == 4
    # one budget, one measurement: the seed that defines the budget is judged by that same number
    seed = search[search["baseline"] == "yolov5s-shufflenetv2"].iloc[0]
    assert bool(seed["feasible"]) and seed["latency_ms"] == r.budget_ms
