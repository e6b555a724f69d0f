"""Named objectives: a third objective (params) added to a pareto study by configuration reaches the trial
values, the study directions, the export and the report page."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from latlab.cli import app
from latlab.errors import SearchError
from latlab.report.build import build_page
from latlab.report.loaders import discover
from latlab.search.export import export_study
from latlab.search.join import _check_join
from latlab.search.objective_registry import get_objective, study_objective_names
from latlab.search.run import run_search
from latlab.search.settings import SearchSettings
from latlab.search.storage import load_search_study

SPACE = {
    "name": "tiny3",
    "stem": {"type": ["CBRM"], "width": [8]},
    "stages": [{"name": "P3", "block": ["shufflenetv2", "pplcnet"], "depth": [1], "width": [16, 24]},
               {"name": "P4", "block": ["ghost"], "depth": [1], "width": [32]},
               {"name": "P5", "block": ["mobilenetv2"], "depth": [1], "width": [32], "expansion": [2]}],
    "sppf": [False],
    "neck": {"width": [16], "depth": [1]},
}




def _settings(tmp_path, data, **over) -> SearchSettings:
    base = dict(mode="pareto", n_trials=3, space=SPACE, imgsz=64, epochs=1, data=str(data), baselines=(),
                sampler="random", results_root=tmp_path / "results", study="three", latency_max_time_s=0.5,
                batch=8, objectives=("latency_ms", "map", "params"))
    base.update(over)
    return SearchSettings(**base)


def _front_by_hand(df: pd.DataFrame) -> list[int]:
    """Trials no other candidate beats in latency ↓, mAP ↑ and params ↓ (one strictly)."""
    ok = df[(df["state"] == "COMPLETE") & (df["baseline"] == "") & df["feasible"].fillna(True).astype(bool)]
    rows = [(int(r.trial), r.latency_ms, r.map, float(r.params)) for r in ok.itertuples()]
    front = []
    for t, lat, m, p in rows:
        beaten = any(lat2 <= lat and m2 >= m and p2 <= p and (lat2 < lat or m2 > m or p2 < p)
                     for _, lat2, m2, p2 in rows)
        if not beaten:
            front.append(t)
    return sorted(front)


def test_a_third_objective_by_configuration(tmp_path, tiny_data):
    res = run_search(_settings(tmp_path, tiny_data))
    study, _ = load_search_study("three", str(tmp_path / "results" / "search" / "three" / "journal.log"))
    assert [d.name for d in study.directions] == ["MINIMIZE", "MAXIMIZE", "MINIMIZE"]
    assert study.user_attrs["latlab.objectives"] == ["latency_ms", "map", "params"]
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done
    for t in done:
        a = t.user_attrs
        assert t.values == [a["latency_ms"], a["map"], a["params"]]
    df = res.trials
    assert sorted(df.loc[df["pareto"], "trial"]) == _front_by_hand(df)

    out = export_study(study, tmp_path / "results" / "search" / "three" / "export-1")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["objectives"] == ["latency_ms", "map", "params"]
    assert meta["objective_info"]["params"]["direction"] == "minimize"
    trials = pd.read_csv(out / "trials.csv")
    assert {"latency_ms", "map", "params"} <= set(trials.columns)
    pareto_csv = pd.read_csv(out / "pareto.csv")
    assert {"latency_ms", "map", "params"} <= set(pareto_csv.columns)

    page = build_page("search", discover(tmp_path / "results").runs)
    figs = dict(page.figures)
    assert "params" in figs["fig-three-params"].layout.xaxis.title.text
    html = page.render()
    assert "Pareto-optimal trials over 3 objectives: latency_ms, map, params." in html


def test_objective_names_are_checked():
    with pytest.raises(SearchError, match="objective 'energy'"):
        SearchSettings(mode="pareto", objectives=("latency_ms", "map", "energy")).check()
    with pytest.raises(SearchError, match="pareto study"):
        SearchSettings(mode="constrained", latency_budget_ms=5, objectives=("latency_ms", "map", "params")).check()
    assert get_objective("params").direction == "minimize" and get_objective("map").direction == "maximize"
    # a study made before objectives were named is read as the latency / mAP pair
    assert study_objective_names({"latlab.mode": "pareto"}) == ["latency_ms", "map"]


def test_joining_checks_objectives_and_backend_with_defaults_for_old_studies():
    mine = {"mode": "pareto", "imgsz": 64, "latency_kind": "lut", "latency_source": "lut:x", "space_hash": "h",
            "latency_budget_ms": None, "nc": 1, "train_budget": {}, "estimator": "p10",
            "objectives": ["latency_ms", "map"], "backend": "torch", "hardware_key": "k", "fingerprint": {}}
    old = {f"latlab.{k}": v for k, v in mine.items() if k not in ("objectives", "backend")}
    _check_join("s", old, mine, "here")  # no objectives/backend attributes: today's pair on torch
    with pytest.raises(SearchError, match=r"objectives: study has \['latency_ms', 'map'\]"):
        _check_join("s", old, {**mine, "objectives": ["latency_ms", "map", "params"]}, "here")
    with pytest.raises(SearchError, match="backend: study has 'torch'"):
        _check_join("s", old, {**mine, "backend": "onnxruntime"}, "here")


def test_cli_objective_option_reaches_the_settings():
    res = CliRunner().invoke(app, ["search", "run", "--mode", "pareto", "--objective", "energy", "--trials", "1"])
    assert isinstance(res.exception, SearchError) and "objective 'energy'" in str(res.exception)
