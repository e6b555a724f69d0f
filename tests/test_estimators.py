"""Accuracy estimators: every proxy against hand-computed values on 2-layer nets, determinism given a seed,
the two-stage selection rule with a fake screen, and ``--accuracy NAME`` in a tiny search."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from search_fixtures import TINY_SPACE
from torch import nn

from latlab.cli import main
from latlab.errors import SearchError
from latlab.profiling.counter import count_model
from latlab.report.build import build_report
from latlab.search.estimators import (
    AccuracyEstimator,
    Estimate,
    EstimatorContext,
    EstimatorSpec,
    list_estimators,
    make_estimator,
    register_estimator,
    unregister_estimator,
)
from latlab.search.estimators.data import seeded_model
from latlab.search.estimators.proxies import (
    backbone_features,
    maedet_from_features,
    naswot_kernel,
    naswot_score,
    synflow_score,
    zico_from_grads,
    zico_score,
)
from latlab.search.estimators.twostage import TwoStageEstimator
from latlab.search.export import export_study, trials_frame
from latlab.search.storage import open_storage
from latlab.search.study import SearchSettings, run_search

# a detector whose backbone has one output at each stride 2..32 (P3/P4/P5 = rows 2, 3, 4)
TINY_DET = {
    "nc": 2, "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]],
                 [-1, 1, "Conv", [8, 3, 2]], [-1, 1, "Conv", [8, 3, 2]]],
    "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]],
}




def _ctx(data: Path, seed: int = 0) -> EstimatorContext:
    return EstimatorContext(data=str(data), imgsz=64, batch=4, seed=seed)


def _set(module: nn.Module, weight: list) -> nn.Module:
    with torch.no_grad():
        module.weight.copy_(torch.tensor(weight, dtype=torch.float32).view_as(module.weight))
    return module


# ---------------------------------------------------------------------------------------------------------
# Hand-computed values


def test_synflow_of_two_1x1_convs_is_twice_the_linearised_output_and_ignores_batchnorm():
    # |W2| |W1| 1 = 2·3 + 1·1.5 + 0.5·4 = 9.5 per pixel; R = 16 pixels · 9.5 = 152; each layer contributes R
    w1 = [[1.0, -2.0], [0.5, 1.0], [-1.0, 3.0]]
    w2 = [[2.0, -1.0, 0.5]]
    net = nn.Sequential(_set(nn.Conv2d(2, 3, 1, bias=False), w1), nn.BatchNorm2d(3), nn.ReLU(),
                        _set(nn.Conv2d(3, 1, 1, bias=False), w2))
    before = [p.detach().clone() for p in net.parameters()]
    assert synflow_score(net, (1, 2, 4, 4)) == pytest.approx(2 * 16 * 9.5)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))  # not modified


def test_naswot_kernel_and_score_from_hand_made_codes():
    codes = torch.tensor([[1, 0, 1], [1, 1, 0], [0, 0, 1]])
    # K = N_A - Hamming: [[3,1,2],[1,3,0],[2,0,3]], det = 27 - 3 - 12 = 12
    assert torch.equal(naswot_kernel(codes), torch.tensor([[3, 1, 2], [1, 3, 0], [2, 0, 3]], dtype=torch.float64))
    net = nn.Sequential(_set(nn.Linear(2, 3, bias=False), [[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]]), nn.ReLU())
    x = torch.tensor([[1.0, 2.0], [-1.0, 1.0], [2.0, -1.0]])
    # pre-activations [1,2,-1], [-1,1,-2], [2,-1,3] → codes 110, 010, 101 → K [[3,2,1],[2,3,0],[1,0,3]], det 12
    assert naswot_score(net, x) == pytest.approx(math.log(12))


def test_zico_formula_on_known_gradients_and_a_one_weight_net():
    grads = {"a": [torch.tensor([1.0, 2.0, 3.0]), torch.tensor([3.0, 2.0, 5.0])],  # mean|g| 2,2,4; std 1,0,1
             "b": [torch.tensor([-1.0, 1.0]), torch.tensor([1.0, 1.0])],  # 1/1 → ln 1 = 0
             "c": [torch.zeros(2), torch.zeros(2)]}  # std 0 everywhere: skipped
    assert zico_from_grads(grads) == pytest.approx(math.log(2 / 1 + 4 / 1))
    net = _set(nn.Linear(1, 1, bias=False), [[1.0]])
    batches = [(torch.tensor([[1.0]]), torch.tensor([[0.0]])), (torch.tensor([[2.0]]), torch.tensor([[0.0]]))]
    # loss (w x)^2, gradient 2 w x² = 2 and 8: mean 5, std 3
    assert zico_score(net, batches, lambda out, t: (((out - t) ** 2).sum(),)) == pytest.approx(math.log(5 / 3))


def test_maedet_is_the_weighted_sum_of_log_variances():
    feats = [torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, 0.0, 2.0, 2.0]), torch.tensor([0.0, 4.0])]
    assert maedet_from_features(feats) == pytest.approx(math.log(1.25) + math.log(1.0) + math.log(4.0))
    assert maedet_from_features(feats, (0.0, 1.0, 2.0)) == pytest.approx(2 * math.log(4.0))


def test_maedet_reads_the_backbone_outputs_at_strides_8_16_32(tiny_data):
    model = seeded_model(_ctx(tiny_data), TINY_DET)
    feats = backbone_features(model, torch.zeros(1, 3, 64, 64))
    assert [tuple(f.shape[-2:]) for f in feats] == [(8, 8), (4, 4), (2, 2)]


# ---------------------------------------------------------------------------------------------------------
# Registered estimators: determinism, baselines, errors


@pytest.mark.parametrize("name", ["synflow", "naswot", "zico", "maedet"])
def test_proxies_are_deterministic_given_the_seed_and_leave_the_global_rng_alone(tiny_data, name):
    state = torch.get_rng_state()
    a = make_estimator(name, _ctx(tiny_data)).estimate(TINY_DET)
    b = make_estimator(name, _ctx(tiny_data)).estimate(TINY_DET)
    c = make_estimator(name, _ctx(tiny_data, seed=1)).estimate(TINY_DET)
    assert torch.equal(state, torch.get_rng_state())
    assert math.isfinite(a.score) and a.score == b.score and c.score != a.score
    assert a.cost_s > 0 and a.map is None and not a.pruned


def test_params_and_madds_baselines_count_the_model(tiny_data):
    model = seeded_model(_ctx(tiny_data), TINY_DET)
    est = make_estimator("params", _ctx(tiny_data)).estimate(TINY_DET)
    assert est.score == sum(p.numel() for p in model.parameters())
    madds = make_estimator("madds", _ctx(tiny_data)).estimate(TINY_DET).score
    assert madds == count_model(model, imgsz=64).totals["madds"]
    # at least the convolutions' multiply-adds by hand (k²·cin·cout·H·W, 1×1 Detect convs: 3 anchors × 7
    # outputs); the counter adds BatchNorm and the head's decoding on top
    convs = sum(9 * cin * 8 * s * s for cin, s in ((3, 32), (8, 16), (8, 8), (8, 4), (8, 2)))
    detect = sum(8 * 21 * s * s for s in (8, 4, 2))
    assert convs + detect <= madds <= 1.1 * (convs + detect)
    specs = {s.name: s for s in list_estimators()}
    assert specs["params"].kind == specs["madds"].kind == "baseline"
    assert {specs[n].kind for n in ("synflow", "naswot", "zico", "maedet")} == {"zero-cost"}
    assert specs["train"].objective == specs["twostage"].objective == "map"


def test_unknown_estimator_is_a_one_line_error():
    with pytest.raises(SearchError) as info:
        make_estimator("nope")
    assert "\n" not in str(info.value) and "unknown accuracy estimator 'nope'" in str(info.value)
    with pytest.raises(SearchError, match="takes no argument"):
        make_estimator("synflow:x")
    with pytest.raises(SearchError, match="unknown accuracy estimator 'nope'"):
        make_estimator("twostage:nope")
    with pytest.raises(SearchError, match="must be a cheap estimator"):
        make_estimator("twostage:train")


# ---------------------------------------------------------------------------------------------------------
# twostage


class _FakeScreen(AccuracyEstimator):
    spec = EstimatorSpec("fake-screen", "zero-cost", "cfg['score'] (test)")

    def estimate(self, cfg: dict[str, Any], model: Any = None, **_: Any) -> Estimate:
        return Estimate(score=float(cfg["score"]), cost_s=0.25)


class _FakeTrain:
    def estimate(self, cfg: dict[str, Any], model: Any = None, **_: Any) -> Estimate:
        return Estimate(score=cfg["score"] / 100, cost_s=10.0, map=cfg["score"] / 100, map50=0.9,
                        details={"epochs": 1})


@pytest.fixture
def fake_screen():
    register_estimator(_FakeScreen)
    yield "fake-screen"
    unregister_estimator("fake-screen")


def test_twostage_trains_the_first_few_and_then_the_top_quarter_seen(fake_screen):
    est = make_estimator(f"twostage:{fake_screen}")
    assert isinstance(est, TwoStageEstimator)
    est.trainer = _FakeTrain()  # type: ignore[assignment]
    scores = [5, 1, 3, 10, 2, 0, 7, 9]
    # n=4: 10 is the best (0 better < ceil(1)); 2 and 0 are not in the top quarter; 7 at n=7: one better
    # (10) < ceil(1.75) = 2; 9 at n=8: one better < 2
    expected = [True, True, True, True, False, False, True, True]
    got = [est.estimate({"score": s}) for s in scores]
    assert [not g.pruned for g in got] == expected
    for s, g in zip(scores, got, strict=True):
        assert g.details["screen_score"] == s
        if g.pruned:
            assert g.map is None and g.cost_s == 0.25 and g.details["trained"] is False
        else:
            assert g.map == g.score == s / 100 and g.cost_s == 10.25 and g.details["epochs"] == 1
    assert est.identity() == {"estimator": "twostage", "arg": fake_screen, "top_fraction": 0.25, "min_trained": 3}


# ---------------------------------------------------------------------------------------------------------
# --accuracy NAME in a search


def _settings(tmp_path: Path, data: Path, **over: Any) -> SearchSettings:
    base = dict(mode="constrained", latency_budget_ms=1000.0, n_trials=2, space=TINY_SPACE, imgsz=64, epochs=1,
                data=str(data), baselines=(), sampler="random", results_root=tmp_path / "results", study="t",
                latency_max_time_s=0.5, batch=4)
    base.update(over)
    return SearchSettings(**base)


def _journal(tmp_path: Path, study: str = "t") -> Path:
    return tmp_path / "results" / "search" / study / "journal.log"


def test_search_with_a_proxy_records_the_estimator_and_its_score(tmp_path, tiny_data):
    res = run_search(_settings(tmp_path, tiny_data, accuracy="params"))
    info = open_storage(str(_journal(tmp_path)), "t")
    study = optuna.load_study(study_name="t", storage=info.storage)
    assert study.user_attrs["latlab.accuracy_estimator"] == {"estimator": "params", "arg": None}
    assert study.user_attrs["latlab.objectives"] == ["latency_ms", "accuracy_score"]
    assert [d.name for d in study.directions] == ["MAXIMIZE"]
    for t in study.trials:
        a = t.user_attrs
        assert t.state.name == "COMPLETE" and a["accuracy_estimator"] == "params"
        assert t.value == a["accuracy_score"] == a["params"] and a["accuracy_cost_s"] > 0 and "map" not in a
    df = res.trials
    assert df["accuracy_score"].notna().all() and (df["accuracy_estimator"] == "params").all()
    assert res.best is not None and res.best["accuracy_score"] == df["accuracy_score"].max()

    # joining with another estimator is refused and writes nothing
    before = _journal(tmp_path).read_bytes()
    with pytest.raises(SearchError, match=r"accuracy_estimator: study has \{'estimator': 'params'"):
        run_search(_settings(tmp_path, tiny_data, accuracy="synflow"))
    assert _journal(tmp_path).read_bytes() == before


def test_pareto_search_with_synflow_returns_latency_and_score(tmp_path, tiny_data):
    run_search(_settings(tmp_path, tiny_data, mode="pareto", latency_budget_ms=None, accuracy="synflow",
                         n_trials=1))
    study = optuna.load_study(study_name="t", storage=open_storage(str(_journal(tmp_path)), "t").storage)
    (t,) = study.trials
    assert study.user_attrs["latlab.objectives"] == ["latency_ms", "accuracy_score"]
    assert t.values == [t.user_attrs["latency_ms"], t.user_attrs["accuracy_score"]]
    assert t.user_attrs["accuracy_estimator"] == "synflow"
    assert trials_frame(study)["pareto"].sum() == 1
    export_study(study, tmp_path / "export" / "search" / "t")
    html = build_report(tmp_path / "export").pages["search"].read_text()
    assert "accuracy_score" in html and "no accuracy column" not in html  # the proxy's score is the accuracy axis


def test_cli_unknown_estimator_exits_2_in_one_line_and_leaves_the_study_untouched(tmp_path, tiny_data, capsys):
    run_search(_settings(tmp_path, tiny_data, accuracy="params", n_trials=1))
    journal = _journal(tmp_path)
    before = journal.read_bytes()
    rc = main(["search", "run", "--latency-budget", "1000ms", "--trials", "3", "--study", "t", "--storage",
               str(journal), "--imgsz", "64", "--data", str(tiny_data), "--baselines", "", "--accuracy", "nope"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "unknown accuracy estimator 'nope'" in err
    assert journal.read_bytes() == before
    study = optuna.load_study(study_name="t", storage=open_storage(str(journal), "t").storage)
    assert len(study.trials) == 1


def test_twostage_always_trains_a_baseline_and_keeps_it_out_of_the_history(fake_screen):
    est = make_estimator(f"twostage:{fake_screen}")
    est.trainer = _FakeTrain()  # type: ignore[assignment]
    for s in (5, 6, 7, 8):
        est.estimate({"score": s})
    got = est.estimate_baseline({"score": 0})
    assert not got.pruned and got.map == 0.0 and got.details["screen_score"] == 0 and est.seen == [5, 6, 7, 8]


def test_search_with_twostage_records_screen_scores_and_prunes_the_unpromising(tmp_path, tiny_data, monkeypatch):
    from latlab.search.estimators.train import TrainEstimator

    def fake_train(self, cfg, model=None, *, out_dir=None, on_epoch_end=None):
        return Estimate(score=0.5, cost_s=1.0, map=0.5, map50=0.7, details={"epochs": 1, "train_s": 1.0})

    monkeypatch.setattr(TrainEstimator, "estimate", fake_train)
    monkeypatch.setattr(TwoStageEstimator, "min_trained", 1)
    space = {**TINY_SPACE, "stages": [{**TINY_SPACE["stages"][0], "width": [16, 24, 32, 40]},
                                      {**TINY_SPACE["stages"][1], "width": [32, 48, 64]}, TINY_SPACE["stages"][2]]}
    res = run_search(_settings(tmp_path, tiny_data, accuracy="twostage:params", n_trials=5, space=space))
    df = res.trials[res.trials["cached_from"].isna()]
    assert df["screen_score"].notna().all() and (df["accuracy_estimator"] == "twostage:params").all()
    trained = df[df["state"] == "COMPLETE"]
    assert len(trained) >= 1 and (trained["map"] == 0.5).all() and (trained["accuracy_score"] == 0.5).all()
    skipped = df[df["state"] == "PRUNED"]
    assert skipped["note"].str.startswith("not trained: screen score").all() and skipped["map"].isna().all()
    assert len(skipped) >= 1  # five screens, only the first and the top quarter are trained
