"""run_fidelity, the `latlab fidelity` CLI, the fidelity report page and the search page's trust block.

A toy estimator is registered here (its score is the hand-made reference mAP of the architecture, so its τ
must be 1); the reference set is four decoded points of the shipped space, the reference results a
hand-written CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import pytest
from test_report_fixtures import write_search_run

import latlab.report.fidelity as report_fidelity
from latlab.cli import main
from latlab.report.build import build_page, build_report
from latlab.report.loaders import load_run
from latlab.search import reference as R
from latlab.search.estimators import (
    AccuracyEstimator,
    Estimate,
    EstimatorContext,
    EstimatorSpec,
    register_estimator,
    unregister_estimator,
)
from latlab.search.fidelity_run import BASELINES, collect_estimates, publish, read_cache, run_fidelity
from latlab.search.space import DEFAULT_SPACE, arch_hash, load_space
from latlab.yamlio import read_yaml

REF_MAP: dict[str, float] = {}


def tiny_space() -> dict[str, Any]:
    """The shipped space narrowed to its smallest widths and depth 1 (cheap to build in tests)."""
    raw = read_yaml(DEFAULT_SPACE)
    raw["stem"]["width"] = raw["stem"]["width"][:1]
    for st in raw["stages"]:
        st["width"], st["depth"] = st["width"][:1], [1]
    raw["neck"] = {"width": raw["neck"]["width"][:1], "depth": [1]}
    return raw  # arch_hash → reference mean mAP, filled by the fixture


class ToyEstimator(AccuracyEstimator):
    spec: ClassVar[EstimatorSpec] = EstimatorSpec("toy-fid", "zero-cost", "test: returns the reference mAP")

    def estimate(self, cfg: dict[str, Any], model: Any = None, *, out_dir: Path | None = None,
                 on_epoch_end: Any = None) -> Estimate:
        from latlab.search.space import arch_hash

        return Estimate(score=REF_MAP[arch_hash(cfg)], cost_s=0.25)


@pytest.fixture(scope="module", autouse=True)
def toy_registered():
    register_estimator(ToyEstimator)
    yield
    unregister_estimator("toy-fid")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    space = load_space(tiny_space())
    rng = np.random.default_rng(5)
    cands, seen = [], set()
    while len(cands) < 4:
        c = space.decode(space.random_point(rng))
        if c.arch_hash not in seen:
            seen.add(c.arch_hash)
            cands.append(c)
    archs = [R.ReferenceArch(f"ref{i:02d}", c.arch_hash, c.cfg, 1.0 + i, "sampled", c.arch)
             for i, c in enumerate(cands)]
    ref = R.ReferenceSet(None, {"version": 1, "space": space.name, "space_hash": space.space_hash, "nc": space.nc},
                         archs)
    set_path = R.write_reference_set(ref, root / "set.yaml")
    s0, s1 = [0.10, 0.22, 0.18, 0.40], [0.12, 0.20, 0.16, 0.44]
    rows = []
    for a, m0, m1 in zip(archs, s0, s1, strict=True):
        REF_MAP[a.arch_hash] = (m0 + m1) / 2
        rows += [{"name": a.name, "arch_hash": a.arch_hash, "role": "sampled", "seed": s, "map": m, "map50": 0.0,
                  "epochs": 1, "train_s": 1.0, "cpu_s": 1.0} for s, m in ((0, m0), (1, m1))]
    results = root / "ref.csv"
    pd.DataFrame(rows).to_csv(results, index=False)
    R.check_protocol(results, R.ReferenceProtocol(imgsz=64, epochs=1, n_train=8, n_val=4), {})
    return {"root": root, "set": set_path, "results": results, "space_hash": space.space_hash}


@pytest.fixture(scope="module")
def fid_run(files):
    return run_fidelity(["toy-fid"], reference_set=files["set"], reference_results=files["results"],
                        out_dir=files["root"] / "results" / "fidelity" / "run1", n_boot=200)


def test_run_fidelity_writes_table_and_run_folder(fid_run):
    t = fid_run.table.set_index("estimator")
    assert list(fid_run.table["estimator"]) == ["noise_ceiling", "toy-fid", *BASELINES]
    assert t.loc["toy-fid", "kendall_tau"] == pytest.approx(1.0)
    assert t.loc["toy-fid", "n"] == 4 and t.loc["toy-fid", "cost_s_per_candidate"] == pytest.approx(0.25)
    # seeds order the four architectures 0 < 2 < 1 < 3 both times: the ceiling is 1
    assert t.loc["noise_ceiling", "kendall_tau"] == pytest.approx(1.0)
    assert set(t.loc[list(BASELINES), "kind"]) == {"baseline"}
    est = fid_run.estimates
    assert (est.loc[est["estimator"] == "params", "score"] > 1e4).all()
    assert fid_run.meta["protocol"]["imgsz"] == 64 and fid_run.meta["space_hash"]
    for f in ("fidelity.csv", "estimates.csv", "reference.csv", "meta.json"):
        assert (fid_run.path / f).is_file()
    assert json.loads((fid_run.path / "meta.json").read_text())["job"] == "fidelity"
    assert fid_run.separation.spread_range == pytest.approx(0.42 - 0.11)


def test_fidelity_report_page_shows_tau(fid_run):
    run = load_run(fid_run.path)
    assert run.kind == "fidelity"
    page = build_page("fidelity", [run])
    html = page.render()
    assert "toy-fid: Kendall τ = 1.00 [" in html
    assert "noise_ceiling" in html and "Data separation" in html
    assert len(page.figures) == 1 + len(BASELINES)
    rep = build_report(fid_run.path.parent)
    assert "fidelity" in rep.pages and rep.pages["fidelity"].is_file()


def test_publish_and_search_trust_block(fid_run, files, tmp_path, monkeypatch):
    s_path, _ = write_search_run(tmp_path)
    monkeypatch.setattr(report_fidelity, "FIDELITY_DIR", tmp_path / "shipped")
    html = build_page("search", [load_run(s_path)]).render()
    assert "How far to trust this front" in html and "not measured yet for this space" in html
    assert "Accuracy estimator: train." in html
    publish(fid_run.path, tmp_path / "shipped" / "fidelity_v1.csv")
    side = json.loads((tmp_path / "shipped" / "fidelity_v1.json").read_text())
    assert side["space_hash"] == files["space_hash"]
    meta = json.loads((s_path / "meta.json").read_text())
    meta.update(space_hash=files["space_hash"], accuracy_estimator="toy-fid")
    (s_path / "meta.json").write_text(json.dumps(meta))
    html = build_page("search", [load_run(s_path)]).render()
    assert "Accuracy estimator: toy-fid. Kendall τ = 1.00 [" in html
    meta["accuracy_estimator"] = {"estimator": "toy-fid", "arg": None}  # what export writes: the identity
    (s_path / "meta.json").write_text(json.dumps(meta))
    assert "Accuracy estimator: toy-fid. Kendall τ = 1.00 [" in build_page("search", [load_run(s_path)]).render()
    meta["accuracy_estimator"] = "synflow-not-measured"
    (s_path / "meta.json").write_text(json.dumps(meta))
    assert "not measured yet" in build_page("search", [load_run(s_path)]).render()


def test_cli_run_and_errors(files, tmp_path, capsys):
    out = tmp_path / "cli-run"
    rc = main(["fidelity", "run", "--estimators", "toy-fid", "--reference", str(files["results"]), "--set",
               str(files["set"]), "--out", str(out), "--n-boot", "50", "--publish", str(tmp_path / "pub.csv"),
               "--cache", str(tmp_path / "cache.csv")])
    assert rc == 0 and len(pd.read_csv(tmp_path / "cache.csv")) == 4
    text = capsys.readouterr().out
    assert "toy-fid" in text and "noise_ceiling" in text
    assert (out / "fidelity.csv").is_file() and (tmp_path / "pub.csv").is_file()
    rc = main(["fidelity", "run", "--estimators", "no-such-estimator", "--reference", str(files["results"]),
               "--set", str(files["set"]), "--out", str(tmp_path / "bad")])
    assert rc == 2 and "unknown accuracy estimator" in capsys.readouterr().err
    assert not (tmp_path / "bad" / "fidelity.csv").exists()


def test_cli_reference_is_resumable_and_keeps_protocol(files, tmp_path, monkeypatch, capsys):
    calls: list[tuple[str, int]] = []

    def fake(cfg, seed, protocol):
        calls.append((cfg["backbone"][0][2], seed))
        return {"map": 0.1 + 0.01 * seed + 0.001 * len(calls), "map50": 0.2, "epochs": protocol.epochs,
                "train_s": 1.0}

    monkeypatch.setattr(R, "train_one", fake)
    out = tmp_path / "ref.csv"
    args = ["fidelity", "reference", "--set", str(files["set"]), "--out", str(out)]
    assert main([*args, "--epochs", "2", "--shard", "0/2"]) == 0
    assert len(calls) == 4 and R.read_protocol(out).epochs == 2
    assert main(args) == 0  # the stored protocol is reused; shard 0/2 already done, 1/1 does the rest
    assert len(calls) == 8 and len(pd.read_csv(out)) == 8
    assert "seed-to-seed sd" in capsys.readouterr().out
    assert main([*args, "--epochs", "3"]) == 2
    assert "protocol" in capsys.readouterr().err
    assert main([*args, "--shard", "3/2"]) == 2


def test_estimates_cache_resumes_and_survives_a_torn_line(files, tmp_path):
    """Finished estimates go to the cache at once; a rerun reuses them (no new estimate), and a line torn
    by a crash is cut before the next append, the lines before it kept."""
    calls: list[str] = []
    archs = R.load_reference_set(files["set"]).archs
    ctx = EstimatorContext(imgsz=64)

    class Counting(ToyEstimator):
        spec: ClassVar[EstimatorSpec] = EstimatorSpec("toy-count", "zero-cost", "test: counts its calls")

        def estimate(self, cfg, model=None, *, out_dir=None, on_epoch_end=None):
            calls.append(arch_hash(cfg))
            return super().estimate(cfg)

    register_estimator(Counting)
    try:
        cache = tmp_path / "cache.csv"
        first = collect_estimates(archs[:2], ["toy-count"], ctx, baselines=False, cache=cache)
        assert len(calls) == 2
        with cache.open("a") as fh:
            fh.write("deadbeef0000,torn-li")  # a crash in the middle of the next line
        again = collect_estimates(archs, ["toy-count"], ctx, baselines=False, cache=cache)
        assert len(calls) == 4  # only the two new architectures were estimated
        assert list(again["score"][:2]) == list(first["score"])
        assert len(read_cache(cache, ctx)) == 4
        other = collect_estimates(archs[:1], ["toy-count"], EstimatorContext(imgsz=96), baselines=False, cache=cache)
        assert len(calls) == 5 and len(other) == 1  # another context is estimated afresh
    finally:
        unregister_estimator("toy-count")


def test_trust_block_warns_when_the_estimator_does_not_beat_params(tmp_path):
    cols = ["estimator", "kind", "n", "kendall_tau", "tau_ci_low", "tau_ci_high", "spearman_rho", "rho_ci_low",
            "rho_ci_high", "cost_s_per_candidate", "beats_params"]
    rows = [["weak", "zero-cost", 19, 0.35, 0.02, 0.64, 0.5, 0.1, 0.8, 0.2, False],
            ["strong", "zero-cost", 19, 0.70, 0.50, 0.85, 0.8, 0.6, 0.9, 0.2, True],
            ["params", "baseline", 19, 0.50, 0.21, 0.72, 0.68, 0.28, 0.88, 0.2, False]]
    pd.DataFrame(rows, columns=cols).to_csv(tmp_path / "fidelity_v1.csv", index=False)
    (tmp_path / "fidelity_v1.json").write_text(json.dumps({"space_hash": "abc", "protocol": {
        "epochs": 8, "imgsz": 128, "n_train": 1000}}))
    text, trusted = report_fidelity.trust_text({"space_hash": "abc", "accuracy_estimator": "weak"}, folder=tmp_path)
    assert not trusted and "does not beat the #params baseline" in text and "8 epochs at 128 px" in text
    text, trusted = report_fidelity.trust_text({"space_hash": "abc", "accuracy_estimator": "strong"}, folder=tmp_path)
    assert trusted and "does not beat" not in text
    # a study on other data than the reference says so
    easy = {"space_hash": "abc", "accuracy_estimator": "strong",
            "train_budget": {"data": "builtin", "imgsz": 64, "data_kwargs": {"preset": "shapes4-easy"}}}
    text, _ = report_fidelity.trust_text(easy, folder=tmp_path)
    assert "trains on shapes4-easy at 64 px, the reference on shapes10 at 128 px" in text
    same = dict(easy, train_budget={"data": "builtin", "imgsz": 128})
    assert "trains on" not in report_fidelity.trust_text(same, folder=tmp_path)[0]
    # the same space with another class count (another space_hash) finds the table by its choices hash
    side = json.loads((tmp_path / "fidelity_v1.json").read_text()) | {"choices_hash": "xyz"}
    (tmp_path / "fidelity_v1.json").write_text(json.dumps(side))
    nc4 = {"space_hash": "other", "choices_hash": "xyz", "accuracy_estimator": "strong"}
    assert "Kendall" in report_fidelity.trust_text(nc4, folder=tmp_path)[0]
    assert "not measured yet" in report_fidelity.trust_text(dict(nc4, choices_hash="no"), folder=tmp_path)[0]



def test_trust_block_picks_the_table_measured_on_the_study_data(tmp_path):
    """Two shipped tables for one space: the study on shapes4-easy at 64 px reads v2 (its data) even though
    v3 is newer; a study on data no table used reads the newest."""
    cols = ["estimator", "kind", "n", "kendall_tau", "tau_ci_low", "tau_ci_high", "spearman_rho", "rho_ci_low",
            "rho_ci_high", "cost_s_per_candidate", "beats_params"]
    for version, tau, proto in ((2, 0.61, {"imgsz": 64, "preset": "shapes4-easy", "epochs": 16, "n_train": 2000}),
                                (3, 0.33, {"imgsz": 128, "epochs": 8, "n_train": 1000})):
        pd.DataFrame([["train", "training", 19, tau, 0.4, 0.8, 0.7, 0.5, 0.9, 30.0, True]], columns=cols).to_csv(
            tmp_path / f"fidelity_v{version}.csv", index=False)
        (tmp_path / f"fidelity_v{version}.json").write_text(json.dumps({"space_hash": "abc", "protocol": proto}))
    easy = {"space_hash": "abc", "accuracy_estimator": "train",
            "train_budget": {"data": "builtin", "imgsz": 64, "data_kwargs": {"preset": "shapes4-easy"}}}
    text, _ = report_fidelity.trust_text(easy, folder=tmp_path)
    assert "τ = 0.61" in text and "fidelity_v2.csv" in text and "trains on" not in text
    other = dict(easy, train_budget={"data": "builtin", "imgsz": 96})
    text, _ = report_fidelity.trust_text(other, folder=tmp_path)
    assert "τ = 0.33" in text and "fidelity_v3.csv" in text and "trains on shapes10 at 96 px" in text

def test_choices_hash_ignores_the_class_count():
    from latlab.search.space import load_space

    a, b = load_space(None), load_space(None)
    b.nc = 4
    assert a.space_hash != b.space_hash and a.choices_hash == b.choices_hash


class ToyTrainEstimator(AccuracyEstimator):
    """A 'training' estimator whose ranking flips with its budget: wrong at 1 epoch, right at 2."""

    spec: ClassVar[EstimatorSpec] = EstimatorSpec("toy-train", "training", "test: budget-dependent score")

    def estimate(self, cfg: dict[str, Any], model: Any = None, *, out_dir: Path | None = None,
                 on_epoch_end: Any = None) -> Estimate:
        sign = 1.0 if self.ctx.epochs == 2 else -1.0
        return Estimate(score=sign * REF_MAP[arch_hash(cfg)], cost_s=float(self.ctx.epochs))


def test_extra_train_budgets_get_their_own_rows(files, tmp_path):
    """--also-train-epochs 2: the training estimator is scored at 1 epoch (row 'toy-train', τ −1 by
    construction) and at 2 (row 'toy-train@2ep', τ 1); proxies are not repeated; the search page reads the row
    of a study's own budget and says so."""
    register_estimator(ToyTrainEstimator)
    try:
        res = run_fidelity(["toy-train", "toy-fid"], reference_set=files["set"], reference_results=files["results"],
                           train_epochs=1, extra_train_epochs=[2], out_dir=tmp_path / "run", n_boot=100)
    finally:
        unregister_estimator("toy-train")
    t = res.table.set_index("estimator")
    assert t.loc["toy-train", "kendall_tau"] == pytest.approx(-1.0)
    assert t.loc["toy-train@2ep", "kendall_tau"] == pytest.approx(1.0)
    assert t.loc["toy-train@2ep", "cost_s_per_candidate"] == pytest.approx(2.0)
    assert "toy-fid@2ep" not in t.index and res.meta["extra_train_epochs"] == [2]
    publish(res.path, tmp_path / "pub" / "fidelity_v1.csv")
    meta = {"space_hash": files["space_hash"], "accuracy_estimator": "toy-train"}
    two = report_fidelity.trust_text(meta | {"train_budget": {"epochs": 2, "imgsz": 64}}, folder=tmp_path / "pub")[0]
    one = report_fidelity.trust_text(meta | {"train_budget": {"epochs": 1, "imgsz": 64}}, folder=tmp_path / "pub")[0]
    assert "toy-train (2 epochs per candidate)" in two and "τ = 1.00" in two
    assert "τ = -1.00" in one and "epochs per candidate" not in one


def test_also_train_epochs_rejects_bad_text(capsys):
    assert main(["fidelity", "run", "--also-train-epochs", "8,x"]) != 0
    assert "--also-train-epochs '8,x': 'x' is not an epoch count" in capsys.readouterr().err
