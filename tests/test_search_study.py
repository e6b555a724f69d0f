"""Search study: budgets, storage errors, device clashes, crash recovery, caching, Pareto bookkeeping."""

from __future__ import annotations

import fcntl
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from search_fixtures import TINY_SPACE

from latlab.errors import ConfigError, SearchError
from latlab.fingerprint import device_fingerprint, hardware_key
from latlab.search.export import beaten_by, best_trial, pareto_mask, trials_frame
from latlab.search.objectives import TimingLock, builtin_data_kwargs, parse_latency_source
from latlab.search.regret import ProxyObjective, hypervolume_2d, pareto_front_2d, regret_summary
from latlab.search.space import load_space
from latlab.search.study import (
    SearchSettings,
    _SearchOnlyStudy,
    load_search_study,
    make_sampler,
    open_storage,
    parse_latency_budget,
    recover_dead_trials,
    run_search,
)


def _settings(tmp_path, data, **over) -> SearchSettings:
    base = dict(mode="constrained", latency_budget_ms=1000.0, n_trials=2, space=TINY_SPACE, imgsz=64, epochs=1,
                data=str(data), baselines=(), sampler="random", results_root=tmp_path / "results", study="t",
                latency_max_time_s=1.0, batch=8)
    base.update(over)
    return SearchSettings(**base)


@pytest.mark.parametrize("text, ms", [("12ms", 12.0), ("12 ms", 12.0), ("0.012s", 12.0), ("800us", 0.8),
                                      ("1.5e1ms", 15.0)])
def test_latency_budget_units(text, ms):
    assert parse_latency_budget(text) == pytest.approx(ms)


@pytest.mark.parametrize("text, match", [("12", "has no unit"), ("-3ms", "positive"), ("0ms", "positive"),
                                         ("fast", "number with a unit"), ("12 parsecs", "number with a unit")])
def test_bad_latency_budgets(text, match):
    with pytest.raises(SearchError, match=match):
        parse_latency_budget(text)


def test_settings_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(SearchError, match="needs --latency-budget"):
        SearchSettings(mode="constrained").check()
    with pytest.raises(SearchError, match="--mode"):
        SearchSettings(mode="greedy").check()
    with pytest.raises(SearchError, match="multiple of 32"):
        SearchSettings(mode="pareto", imgsz=100).check()
    with pytest.raises(SearchError, match="not both"):
        SearchSettings(mode="pareto", epochs=1, minutes=1.0).check()
    with pytest.raises(SearchError, match="'measured' or 'lut:FILE'"):
        parse_latency_source("table")


def test_unreachable_storage_url_is_a_clear_error_without_the_password():
    with pytest.raises(SearchError, match="cannot reach storage") as err:
        open_storage("postgresql+psycopg2://user:s3cret@127.0.0.1:1/nodb", "x")
    assert "s3cret" not in str(err.value)
    assert "127.0.0.1:1" in str(err.value)


def test_lut_without_table_is_refused(tmp_path, tiny_data):
    with pytest.raises(SearchError, match="latency table file not found"):
        run_search(_settings(tmp_path, tiny_data, latency=f"lut:{tmp_path / 'none.csv'}"))


def test_malformed_space_file_fails_before_the_study_exists(tmp_path, tiny_data):
    bad = tmp_path / "space.yaml"
    bad.write_text("stem: {type: [Conv], width: [16]\n")
    with pytest.raises(ConfigError, match="malformed YAML"):
        run_search(_settings(tmp_path, tiny_data, space=bad))
    assert not (tmp_path / "results" / "search" / "t" / "journal.log").exists()


def test_over_budget_candidates_are_not_trained_and_duplicates_are_cached(tmp_path, tiny_data):
    res = run_search(_settings(tmp_path, tiny_data, latency_budget_ms=0.001, n_trials=4))
    df = res.trials
    assert len(df) == 4 and (df["state"] == "COMPLETE").all()
    assert not df["feasible"].any()
    assert df["map"].isna().all()
    assert df["note"].str.contains("not trained").all()
    assert not (tmp_path / "results" / "search" / "t" / "trials").exists()
    # two architectures in the space, four trials: at least two are cached copies of earlier trials
    cached = df[df["cached_from"].notna()]
    assert len(cached) >= 2
    for _, row in cached.iterrows():
        origin = df.set_index("trial").loc[int(row["cached_from"])]
        assert origin["arch_hash"] == row["arch_hash"] and origin["latency_ms"] == row["latency_ms"]
    assert res.best is None


def _make_study_with_attrs(tmp_path, key: str, data) -> tuple[optuna.Study, str]:
    from latlab.search.space import load_space
    from latlab.search.study import ATTR, _study_attrs

    journal = tmp_path / "results" / "search" / "t" / "journal.log"
    info = open_storage(str(journal), "t")
    study = optuna.create_study(study_name="t", storage=info.storage, directions=["maximize"])
    s = SearchSettings(mode="constrained", latency_budget_ms=1000.0, imgsz=64, epochs=1, batch=8)

    class _Acc:
        def budget(self):
            return {"epochs": 1, "minutes": None, "batch": 8, "imgsz": 64, "data": str(data), "seed": 0}

    fp = device_fingerprint(1, "cpu")
    attrs = _study_attrs(s, load_space(TINY_SPACE), "measured", fp, hardware_key(fp), _Acc())
    attrs["hardware_key"] = key
    attrs["fingerprint"] = {**fp, "cpu_model": "Some Other CPU"}
    for k, v in attrs.items():
        study.set_user_attr(ATTR + k, v)
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"arch": "x", "map": 0.5}))
    return study, str(journal)


def test_joining_a_study_measured_on_another_device_is_refused(tmp_path, tiny_data):
    _, journal = _make_study_with_attrs(tmp_path, "feedfacecafe", tiny_data)
    before = Path(journal).read_bytes()
    with pytest.raises(SearchError, match=r"measured on another device \(Some Other CPU"):
        run_search(_settings(tmp_path, tiny_data))
    assert Path(journal).read_bytes() == before  # nothing written to the existing study



def test_joining_with_other_settings_is_refused(tmp_path, tiny_data):
    fp = device_fingerprint(1, "cpu")
    _, journal = _make_study_with_attrs(tmp_path, hardware_key(fp), tiny_data)
    before = Path(journal).read_bytes()
    with pytest.raises(SearchError, match=r"other settings \(imgsz: study has 64, this run 96"):
        run_search(_settings(tmp_path, tiny_data, imgsz=96))
    with pytest.raises(SearchError, match=r"latency_budget_ms: study has 1000.0, this run 5.0"):
        run_search(_settings(tmp_path, tiny_data, latency_budget_ms=5.0))
    assert Path(journal).read_bytes() == before


def test_dead_owner_trials_are_failed_and_retried(tmp_path):
    info = open_storage(str(tmp_path / "j.log"), "r")
    study = optuna.create_study(study_name="r", storage=info.storage, directions=["maximize"])
    child = subprocess.Popen([sys.executable, "-c", "import psutil, os; print(psutil.Process().create_time())"],
                             stdout=subprocess.PIPE, text=True)
    start = float(child.communicate()[0])
    done = study.ask()
    study.tell(done, 0.3)
    t = study.ask({"P3.width": optuna.distributions.CategoricalDistribution([16, 32])})
    for k, v in {"owner_host": __import__("socket").gethostname(), "owner_pid": child.pid, "owner_start": start,
                 "baseline": "yolov5n"}.items():
        t.set_user_attr(k, v)
    alive = study.ask()
    for k, v in {"owner_host": __import__("socket").gethostname(), "owner_pid": __import__("os").getpid(),
                 "owner_start": __import__("psutil").Process().create_time()}.items():
        alive.set_user_attr(k, v)
    assert recover_dead_trials(study) == [t.number]
    trials = study.get_trials()
    assert trials[t.number].state == optuna.trial.TrialState.FAIL
    assert trials[alive.number].state == optuna.trial.TrialState.RUNNING
    assert trials[done.number].state == optuna.trial.TrialState.COMPLETE
    retry = [x for x in trials if x.state == optuna.trial.TrialState.WAITING]
    assert len(retry) == 1
    assert retry[0].user_attrs["retry_of"] == t.number and retry[0].user_attrs["baseline"] == "yolov5n"
    assert recover_dead_trials(study) == []  # idempotent: nothing is retried twice


def test_samplers_do_not_see_baseline_trials():
    study = optuna.create_study()
    study.add_trial(optuna.trial.create_trial(value=1.0, user_attrs={"baseline": "yolov5n"}))
    study.add_trial(optuna.trial.create_trial(value=2.0, params={"x": 1},
                                              distributions={"x": optuna.distributions.IntDistribution(0, 3)}))
    view = _SearchOnlyStudy(study)
    assert [t.value for t in view.get_trials()] == [2.0]
    assert [t.value for t in view._get_trials(deepcopy=False, states=None, use_cache=False)] == [2.0]
    assert view.directions == study.directions


def test_timing_lock_excludes_a_second_holder(tmp_path):
    lock = TimingLock(tmp_path / "timing.lock")
    with lock.hold(), open(lock.path, "a+") as other, pytest.raises(BlockingIOError):
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    with open(lock.path, "a+") as other:
        fcntl.flock(other.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again after the block


def _df(rows):
    base = {"state": "COMPLETE", "baseline": "", "feasible": True, "note": ""}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_pareto_best_and_beaten_by_on_hand_made_trials():
    df = _df([
        {"trial": 0, "latency_ms": 10.0, "map": 0.30, "baseline": "yolov5n"},
        {"trial": 1, "latency_ms": 8.0, "map": 0.32},   # dominates the baseline
        {"trial": 2, "latency_ms": 12.0, "map": 0.40},  # front
        {"trial": 3, "latency_ms": 9.0, "map": 0.20},   # dominated by 1
        {"trial": 4, "latency_ms": 5.0, "map": 0.10},   # front
        {"trial": 5, "latency_ms": 4.0, "map": 0.50, "feasible": False},  # infeasible: ignored
        {"trial": 6, "latency_ms": 3.0, "map": math.nan, "state": "PRUNED"},
    ])
    assert df.loc[pareto_mask(df), "trial"].tolist() == [1, 2, 4]
    assert best_trial(df)["trial"] == 2
    assert beaten_by(df, df.iloc[0]) == 1
    assert beaten_by(df, df.iloc[2]) is None


def test_hypervolume_by_hand():
    pts = np.array([[1.0, 0.5], [2.0, 0.8], [2.5, 0.6], [4.0, 0.9]])
    # front (1, .5), (2, .8); ref (3, 0): 2*.5 + 1*.3 = 1.3; (4, .9) lies beyond the reference latency
    assert hypervolume_2d(pts, (3.0, 0.0)) == pytest.approx(1.3)
    assert pareto_front_2d(pts).tolist() == [[1.0, 0.5], [2.0, 0.8], [4.0, 0.9]]
    assert hypervolume_2d(np.empty((0, 2)), (3.0, 0.0)) == 0.0


def test_trials_frame_columns_of_an_empty_study():
    df = trials_frame(optuna.create_study())
    assert list(df.columns)[:5] == ["trial", "state", "arch", "arch_hash", "yaml_path"]
    assert {"latency_ms", "params", "madds", "mac_bytes", "map50", "map", "feasible", "baseline"} <= set(df.columns)


class _FakeTable:
    """Stands in for latlab.lut.predict.LatencyPredictor: 1 ms per 100k parameters."""

    def predict(self, model):
        return sum(p.numel() for p in model.parameters()) / 1e5

    def identity(self):
        return {"sha256": "abcdef0123456789", "estimator": "p10", "threads": 1}


def test_table_latency_may_join_a_study_from_another_device(tmp_path, tiny_data, monkeypatch):
    import latlab.search.run as study_mod

    table = tmp_path / "table.json"
    table.write_text("{}")
    monkeypatch.setattr(study_mod, "load_lut_predictor", lambda path, **kw: _FakeTable())
    s = _settings(tmp_path, tiny_data, latency=f"lut:{table}", latency_budget_ms=1e-6, n_trials=1)
    res = run_search(s)
    row = res.trials.iloc[0]
    assert row["latency_source"] == "lut:abcdef012345"
    assert row["latency_ms"] == pytest.approx(row["params"] / 1e5)
    assert not row["feasible"]
    st, _ = load_search_study("t", str(tmp_path / "results" / "search" / "t" / "journal.log"))
    assert st.user_attrs["latlab.latency_kind"] == "lut"
    st.set_user_attr("latlab.hardware_key", "another-device")
    res = run_search(_settings(tmp_path, tiny_data, latency=f"lut:{table}", latency_budget_ms=1e-6, n_trials=2))
    assert len(res.trials) == 2
    with pytest.raises(SearchError, match="measured on another device"):
        run_search(_settings(tmp_path, tiny_data, latency_budget_ms=1e-6, n_trials=3))
    st.set_user_attr("latlab.hardware_key", hardware_key(device_fingerprint(1, "cpu")))
    with pytest.raises(SearchError, match="latency_kind: study has 'lut', this run 'measured'"):
        run_search(_settings(tmp_path, tiny_data, latency_budget_ms=1e-6, n_trials=3))


def test_auto_sampler_is_gp_for_pareto_and_tpe_for_constrained():
    assert SearchSettings(mode="pareto").sampler_name == "gp"
    assert SearchSettings(mode="constrained", latency_budget_ms=5).sampler_name == "tpe"
    assert SearchSettings(mode="pareto", sampler="nsga2").study_name == "pareto-nsga2"
    assert isinstance(make_sampler("gp", 0, multi_objective=True).inner, optuna.samplers.GPSampler)


def test_gp_sampler_models_the_space_past_its_startup_trials_and_ignores_baselines():
    # 10 random start-up trials, then the GP proposes (it stores its proposal as a system attribute);
    # a baseline trial without parameters sits in the study as in a real search
    space = load_space()
    objective = ProxyObjective(space)
    study = optuna.create_study(directions=["minimize", "maximize"],
                                sampler=make_sampler("gp", 0, multi_objective=True))
    study.add_trial(optuna.trial.create_trial(values=[5.0, 0.2], user_attrs={"baseline": "yolov5n"}))
    study.optimize(lambda t: objective(space.suggest(t).point), n_trials=12)
    searched = [t for t in study.trials if "baseline" not in t.user_attrs]
    assert len(searched) == 12 and all(t.state == optuna.trial.TrialState.COMPLETE for t in searched)
    proposed = [t.number for t in searched if any(k.startswith("gp:relative_params") for k in t.system_attrs)]
    assert proposed == [11, 12]  # trial 0 is the baseline, 1-10 are the random start-up


def test_regret_summary_ratio_and_interval_by_hand():
    rows = [{"sampler": s, "seed": i, "regret": r, "hv": 10 - r}
            for s, regrets in (("random", [2.0, 4.0]), ("gp", [1.0, 2.0])) for i, r in enumerate(regrets)]
    g = regret_summary(pd.DataFrame(rows)).set_index("sampler")
    assert g.loc["gp", "regret_ratio"] == pytest.approx(1.5 / 3.0)
    assert g.loc["gp", "hv_ratio"] == pytest.approx(8.5 / 7.0)
    # every resample of seeds keeps gp at half of random, seed by seed
    assert g.loc["gp", "ratio_lo"] == pytest.approx(0.5) and g.loc["gp", "ratio_hi"] == pytest.approx(0.5)


def _load(tmp_path, name: str) -> optuna.Study:
    info = open_storage(str(tmp_path / "results" / "search" / name / "journal.log"), name)
    return optuna.load_study(study_name=name, storage=info.storage)


def test_new_studies_sample_positions_and_older_studies_keep_sampling_categorically(tmp_path, tiny_data,
                                                                                    monkeypatch):
    import latlab.search.run as study_mod

    space = {**TINY_SPACE, "stages": [{**TINY_SPACE["stages"][0], "width": [16, 24]}, *TINY_SPACE["stages"][1:]]}
    fast = dict(space=space, latency_budget_ms=0.001)  # over budget: timed and counted, never trained
    run_search(_settings(tmp_path, tiny_data, n_trials=1, study="new", **fast))
    new = _load(tmp_path, "new")
    assert new.user_attrs["latlab.param_encoding"] == "ordinal"
    t = new.trials[0]
    assert t.distributions["P3.width"] == optuna.distributions.IntDistribution(0, 1)
    assert t.user_attrs["point"]["P3.width"] == [16, 24][t.params["P3.width"]]

    # a study made before the encoding existed has no such attribute and categorical parameters
    make_attrs = study_mod._study_attrs
    monkeypatch.setattr(study_mod, "_study_attrs", lambda *a: {k: v for k, v in make_attrs(*a).items()
                                                               if k != "param_encoding"})
    run_search(_settings(tmp_path, tiny_data, n_trials=1, study="old", **fast))
    monkeypatch.undo()
    res = run_search(_settings(tmp_path, tiny_data, n_trials=3, study="old", resume=True, **fast))
    assert len(res.trials) == 3 and (res.trials["state"] == "COMPLETE").all()
    old = _load(tmp_path, "old")
    assert "latlab.param_encoding" not in old.user_attrs
    assert all(t.distributions["P3.width"] == optuna.distributions.CategoricalDistribution([16, 24])
               for t in old.trials)


def test_budget_from_a_baseline_is_one_measurement(tmp_path, tiny_data):
    """The model that defines the budget is judged by the very measurement the budget came from: its trial's
    latency equals the stored budget exactly (a second measurement would differ in the last digits), so it is
    feasible by construction; a joining run reads the budget from the study instead of measuring again."""
    s = _settings(tmp_path, tiny_data, latency_budget_ms=None, budget_from="yolov5n", baselines=("yolov5n",),
                  accuracy="params", n_trials=1)
    run_search(s)
    study, _ = load_search_study("t", root=tmp_path / "results")
    budget = study.user_attrs["latlab.latency_budget_ms"]
    base = next(t for t in study.trials if t.user_attrs.get("baseline") == "yolov5n")
    assert base.user_attrs["latency_ms"] == budget and base.user_attrs["feasible"] is True
    assert study.user_attrs["latlab.budget_measurement"]["yolov5n"]["latency_ms"] == budget
    run_search(_settings(tmp_path, tiny_data, latency_budget_ms=None, budget_from="yolov5n", baselines=("yolov5n",),
                         accuracy="params", n_trials=2))
    study, _ = load_search_study("t", root=tmp_path / "results")
    assert study.user_attrs["latlab.latency_budget_ms"] == budget and len(study.trials) == 3


def test_budget_scale_makes_the_budget_a_fraction_of_the_baseline(tmp_path, tiny_data):
    """--budget-from yolov5n --budget-scale 0.8: the budget is 0.8 × the one measurement of yolov5n, so that
    baseline (judged by that measurement) is infeasible, and the stored measurement is the unscaled one."""
    run_search(_settings(tmp_path, tiny_data, latency_budget_ms=None, budget_from="yolov5n", budget_scale=0.8,
                         baselines=("yolov5n",), accuracy="params", n_trials=1))
    study, _ = load_search_study("t", root=tmp_path / "results")
    measured = study.user_attrs["latlab.budget_measurement"]["yolov5n"]["latency_ms"]
    assert study.user_attrs["latlab.latency_budget_ms"] == pytest.approx(0.8 * measured, rel=1e-12)
    base = next(t for t in study.trials if t.user_attrs.get("baseline") == "yolov5n")
    assert base.user_attrs["latency_ms"] == measured and base.user_attrs["feasible"] is False


def test_budget_scale_needs_budget_from_and_a_positive_value():
    with pytest.raises(SearchError, match="give --budget-from too"):
        SearchSettings(budget_scale=0.8, latency_budget_ms=3.0).check()
    with pytest.raises(SearchError, match=r"--budget-scale must be a finite number > 0, got 0\.0"):
        SearchSettings(budget_from="yolov5n", baselines=("yolov5n",), budget_scale=0.0).check()


def test_builtin_data_options_are_checked():
    assert builtin_data_kwargs("builtin", preset="shapes4-easy", n_train=10) == {"preset": "shapes4-easy",
                                                                                "n_train": 10}
    assert builtin_data_kwargs("data.yaml") == {}
    with pytest.raises(SearchError, match="--n-val: only for the built-in data"):
        builtin_data_kwargs("data.yaml", n_val=5)
    with pytest.raises(SearchError, match="--preset 'hard'"):
        builtin_data_kwargs("builtin", preset="hard")
    with pytest.raises(SearchError, match="--n-train must be an integer >= 1, got 0"):
        builtin_data_kwargs("builtin", n_train=0)


def test_budget_from_must_name_a_baseline():
    with pytest.raises(SearchError, match="must be one of the baselines"):
        SearchSettings(budget_from="yolov5s", baselines=("yolov5n",)).check()
    with pytest.raises(SearchError, match="not both"):
        SearchSettings(budget_from="yolov5n", baselines=("yolov5n",), latency_budget_ms=3.0).check()
