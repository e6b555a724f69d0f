"""Report pages built from synthetic run folders: what each figure holds, and the errors on bad input.

Expected numbers come from the fixtures (``test_report_fixtures``), hand calculation, scipy and Optuna's
own hypervolume, never from the report code itself.
"""

from __future__ import annotations

import itertools
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from test_report_fixtures import (
    write_all,
    write_count_run,
    write_guidelines_run,
    write_lut_run,
    write_profile_run,
    write_search_run,
)

from latlab.errors import LatlabError
from latlab.report import build_report
from latlab.report import lut as lut_page
from latlab.report import search as search_page
from latlab.report.build import build_page
from latlab.report.html import Page, figure_points
from latlab.report.loaders import discover
from latlab.runs import RunWriter


def _points(page: Page, div: str) -> dict[str | None, list[int]]:
    fig = dict(page.figures)[div]
    out: dict[str | None, list[int]] = {}
    for name, n in figure_points(fig):
        out.setdefault(name, []).append(n)
    return out


# ------------------------------------------------------------------------------------ bad input
def test_empty_folder_says_what_it_expected(tmp_path: Path) -> None:
    with pytest.raises(LatlabError, match=r"is empty.*expected run folders with a meta\.json"):
        build_report(tmp_path)


def test_unrelated_folder_says_what_it_expected(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("a,b\n1,2\n")
    with pytest.raises(LatlabError, match=r"no meta\.json.*latlab guidelines.*latlab search export"):
        build_report(tmp_path)


def test_folder_with_only_unreported_jobs(tmp_path: Path) -> None:
    run = tmp_path / "train" / "a"
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"job": "train"}))
    with pytest.raises(LatlabError, match=r"1 run folder\(s\) but none a report page shows.*job 'train'"):
        build_report(tmp_path)


def test_search_trial_folders_are_not_listed_as_unshown_runs(tmp_path: Path) -> None:
    from latlab.report.loaders import discover

    for sub in ("study/trials/00000", "study/trials/00001", "train/a"):
        (tmp_path / sub).mkdir(parents=True)
        (tmp_path / sub / "meta.json").write_text(json.dumps({"job": "train"}))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "meta.json").write_text(json.dumps({"job": "guidelines"}))
    (tmp_path / "g" / "verdicts.csv").write_text("guideline,verdict\nG1,holds\n")
    found = discover(tmp_path)
    assert [p.name for p, _ in found.skipped] == ["a"]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(LatlabError, match="does not exist"):
        build_report(tmp_path / "nope")


def test_cli_prints_one_line_and_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from latlab.cli import main

    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "expected" in err and "Traceback" not in err


def test_cli_writes_the_pages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from latlab.cli import main

    write_lut_run(tmp_path)
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "out" / "r.html")]) == 0
    assert (tmp_path / "out" / "r.html").is_file() and (tmp_path / "out" / "r-lut.html").is_file()
    assert "r-lut.html" in capsys.readouterr().out


# ---------------------------------------------------------------------------------- whole report
def test_report_pages_are_offline_with_headers(tmp_path: Path) -> None:
    write_all(tmp_path)
    rep = build_report(tmp_path, tmp_path / "site" / "index.html")
    assert set(rep.pages) == {"guidelines", "profile", "search", "lut"}
    assert [p.name for p, _ in rep.skipped] == ["x"]  # the train run
    for kind, path in rep.pages.items():
        text = path.read_text()
        # the only script loaded from a file is the folder's own plotly.js, by a relative path
        assert re.findall(r"<script[^>]+src=\"([^\"]*)\"", text) == ["plotly.min.js"], kind
        for run in (r for r in rep.runs if r.kind == kind):
            assert str(run.path) in text  # each run's header: folder, command, fingerprint
            assert run.fingerprint["cpu_model"] in text
        assert "latlab-selftest" in text
    index = rep.index.read_text()
    assert "<script src=" not in index  # the index has no figures
    for path in rep.pages.values():
        assert f'href="{path.name}"' in index


def _plotly_banner() -> str:
    from plotly.offline import get_plotlyjs

    banner = get_plotlyjs()[:200].strip().splitlines()[1]  # "* plotly.js v3.x.y"
    assert "plotly.js" in banner
    return banner


def test_report_folder_holds_one_plotly_js_that_every_page_loads(tmp_path: Path) -> None:
    from plotly.offline import get_plotlyjs

    write_all(tmp_path)
    rep = build_report(tmp_path, tmp_path / "site" / "index.html")
    site = tmp_path / "site"
    banner = _plotly_banner()
    holders = [p.name for p in site.iterdir() if banner in p.read_text(encoding="utf-8")]
    assert holders == ["plotly.min.js"]  # one copy, no page embeds its own
    assert (site / "plotly.min.js").read_text(encoding="utf-8") == get_plotlyjs()  # the installed package's
    for path in rep.pages.values():
        assert '<script src="plotly.min.js"></script>' in path.read_text(), path.name
    assert sorted(p.name for p in site.iterdir()) == sorted(
        ["plotly.min.js", "index.html", *(p.name for p in rep.pages.values())])
    # The whole report of four pages: one plotly.js (~4.7 MB) and small pages (it was ~19 MB with a copy each).
    total = sum(p.stat().st_size for p in site.iterdir())
    assert total < 6_000_000, total
    # A second build leaves the identical copy alone.
    before = (site / "plotly.min.js").stat().st_mtime_ns
    build_report(tmp_path, tmp_path / "site" / "index.html")
    assert (site / "plotly.min.js").stat().st_mtime_ns == before


def test_stale_plotly_js_is_replaced_and_a_lone_page_embeds_it(tmp_path: Path) -> None:
    write_lut_run(tmp_path)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "plotly.min.js").write_text("/* another plotly version */")
    build_report(tmp_path, tmp_path / "out" / "r.html")
    assert _plotly_banner() in (tmp_path / "out" / "plotly.min.js").read_text(encoding="utf-8")
    assert not (tmp_path / "out" / "plotly.min.js.tmp").exists()
    page = build_page("lut", discover(tmp_path).runs)
    assert _plotly_banner() in page.render() and "<script src=" not in page.render()


# ------------------------------------------------------------------------------------ guidelines
def test_guidelines_page(tmp_path: Path) -> None:
    write_guidelines_run(tmp_path, widths=(1, 2))
    page = build_page("guidelines", discover(tmp_path).runs)
    assert [d for d, _ in page.figures] == ["fig-quick-g1", "fig-quick-g2"]
    pts = _points(page, "fig-quick-g1")
    # 4 rows of Table 1 at each of 2 widths, for every series
    for series in ("measured latency", "paper latency", "multiply-adds (paper's FLOPs)",
                   "FLOPs (2×madds + element-wise)", "memory access bytes (MAC)"):
        assert pts[series] == [4, 4]
    fig = dict(page.figures)["fig-quick-g1"]
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["×1: holds, ρ +1.00", "×2: holds, ρ +1.00"]
    measured = next(t for t in fig.data if t.name == "measured latency")
    g1 = pd.read_csv(tmp_path / "guidelines" / "quick" / "G1.csv")
    w1 = g1[g1["width"] == 1]
    assert np.allclose(measured.y, w1["rel_latency"])
    assert np.allclose(measured.error_y.array, w1["rel_ci_high"] - w1["rel_latency"])
    flops = next(t for t in fig.data if t.name == "FLOPs (2×madds + element-wise)")
    assert np.allclose(flops.y, 1.0)  # the fixture's flops are equal across rows


# --------------------------------------------------------------------------------------- profile
def test_profile_page_stacks_layers_by_group(tmp_path: Path) -> None:
    _, fx = write_count_run(tmp_path, n_layers=6)
    write_profile_run(tmp_path, n_layers=6)
    page = build_page("profile", discover(tmp_path).runs)
    pts = _points(page, "fig-tiny-64-layers")
    for group in ("conv", "depthwise", "element-wise", "data movement", "other"):
        n = sum(group in g for g in fx.groups_per_layer.values())
        # one trace in the FLOPs row (if that group has any work) and one in the MAC-bytes row
        assert (n == 0 and group not in pts) or pts[group][-1] == n, group
    assert pts["latency (p10)"] == [6]
    assert _points(page, "fig-tiny-64-layer-scatter") == {"layers (madds)": [6], "layers (mac_bytes)": [6]}
    # one model only: no across-models figure
    assert "fig-models-scatter" not in dict(page.figures)


def test_profile_spearman_matches_scipy(tmp_path: Path) -> None:
    _, _ = write_count_run(tmp_path, n_layers=5)
    write_profile_run(tmp_path, n_layers=5)
    page = build_page("profile", discover(tmp_path).runs)
    fig = dict(page.figures)["fig-tiny-64-layer-scatter"]
    ops = pd.read_csv(tmp_path / "count" / "tiny-64" / "ops.csv")
    layers = pd.read_csv(tmp_path / "profile" / "tiny-64" / "layers.csv")
    per = ops.groupby("layer")[["madds", "mac_bytes"]].sum().loc[layers["layer"]]
    rho_m = spearmanr(per["madds"], layers["estimate_ms"]).statistic
    rho_b = spearmanr(per["mac_bytes"], layers["estimate_ms"]).statistic
    titles = [a.text for a in fig.layout.annotations]
    assert f"Spearman ρ = {rho_m:.2f} (n = 5)" in titles[0]
    assert f"Spearman ρ = {rho_b:.2f} (n = 5)" in titles[1]


def test_profile_across_models_hand_ranks(tmp_path: Path) -> None:
    # three models: latency rises with madds (ρ = +1) while mac_bytes falls (ρ = -1)
    for name, ms, madds, mac in (("a", 1.0, 10, 300), ("b", 2.0, 20, 200), ("c", 3.0, 30, 100)):
        run = tmp_path / "profile" / name
        w = RunWriter(run, "profile")
        w.save_table(pd.DataFrame([{"model": name, "estimator": "p10", "estimate_ms": ms, "ci_low_ms": ms,
                                    "ci_high_ms": ms}]), "latency")
        w.write_meta(model=name, imgsz=64, totals={"params": 1, "madds": madds, "flops": 2 * madds,
                                                   "mac_bytes": mac})
    page = build_page("profile", discover(tmp_path).runs)
    fig = dict(page.figures)["fig-models-scatter"]
    titles = [a.text for a in fig.layout.annotations]
    assert "Spearman ρ = 1.00 (n = 3)" in titles[0]
    assert "Spearman ρ = -1.00 (n = 3)" in titles[1]
    assert [len(t.x) for t in fig.data] == [3, 3]


def test_profile_page_from_a_real_count(tmp_path: Path) -> None:
    from latlab.profiling.counter import count

    res = count("yolov5n", 128)
    w = RunWriter(tmp_path / "count" / "n", "count")
    w.save_table(res.ops, "ops")
    w.write_meta(model="yolov5n", imgsz=128, totals=res.totals)
    page = build_page("profile", discover(tmp_path).runs)
    fig = dict(page.figures)["fig-yolov5n-128-layers"]
    assert len(fig.layout.xaxis.categoryarray) == 25  # yolov5n: 10 backbone + 15 head YAML layers
    conv = [t for t in fig.data if t.name == "conv"]
    with_conv = res.ops.loc[(res.ops["layer"] >= 0) & res.ops["category"].isin(["conv", "pointwise"]), "layer"]
    assert len(conv[0].x) == with_conv.nunique()  # Upsample / Concat layers have no conv bar
    total = sum(float(np.sum(t.y)) for t in fig.data if t.xaxis == "x" and t.name in
                ("conv", "depthwise", "element-wise", "data movement", "other"))
    assert total == pytest.approx(res.ops.loc[res.ops["layer"] >= 0, "flops"].sum())


# ---------------------------------------------------------------------------------------- search
def test_pareto_and_hypervolume_by_hand() -> None:
    lat = np.array([1.0, 2.0, 3.0, 4.0, 2.0])
    acc = np.array([0.2, 0.5, 0.4, 0.7, 0.5])
    assert search_page.pareto_mask(lat, acc).tolist() == [True, True, False, True, False]
    # (5-1)·0.2 + (5-2)·(0.5-0.2) + (5-4)·(0.7-0.5) = 1.9
    assert search_page.hypervolume_2d(lat, acc, 5.0) == pytest.approx(1.9)


def test_hypervolume_matches_optuna() -> None:
    from optuna._hypervolume import compute_hypervolume

    rng = np.random.default_rng(0)
    lat, acc = rng.uniform(1, 9, 30), rng.uniform(0.05, 0.8, 30)
    ref = 10.0
    expected = compute_hypervolume(np.stack([lat, -acc], axis=1), np.array([ref, 0.0]))
    assert search_page.hypervolume_2d(lat, acc, ref) == pytest.approx(expected)


@pytest.fixture(scope="module")
def search_src(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("search")
    path, fx = write_search_run(root)
    return root, path.relative_to(root), fx


def _copy_search(src, dst: Path) -> tuple[Path, object]:
    """A private copy of the module's search run (its meta's storage path pointed at the copy)."""
    root, rel, fx = src
    shutil.copytree(root, dst, dirs_exist_ok=True)
    meta = json.loads((dst / rel / "meta.json").read_text())
    meta["storage"] = str(dst / rel.parent / "journal.log")
    (dst / rel / "meta.json").write_text(json.dumps(meta))
    return dst / rel, fx


def test_search_page(tmp_path: Path, search_src) -> None:
    path, fx = _copy_search(search_src, tmp_path)
    page = build_page("search", discover(tmp_path).runs)
    pts = _points(page, "fig-demo-trials")
    assert pts == {"Pareto front": [len(fx.front)], "feasible trials": [fx.n_feasible],
                   "infeasible (over budget)": [fx.n_infeasible],
                   "pruned (no accuracy → drawn at 0)": [fx.n_pruned], "seed baselines": [2]}
    fig = dict(page.figures)["fig-demo-trials"]
    assert fig.layout.yaxis.title.text == "map"  # mAP50-95, what the search optimises
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert front.line.shape == "hv"
    trials = pd.read_csv(path / "trials.csv").set_index("trial")
    assert list(front.x) == sorted(trials.loc[fx.front, "latency_ms"])
    base = next(t for t in fig.data if t.name == "seed baselines")
    assert list(base.text) == fx.baselines
    assert [s.x0 for s in fig.layout.shapes] == [fx.budget]  # the budget line
    feas = next(t for t in fig.data if t.name == "feasible trials")
    yaml0, title0 = feas.customdata[0]
    trial_no = int(title0.split()[1])
    assert yaml0 == (path / "yamls" / f"trial_{trial_no:05d}.yaml").read_text()
    hover = feas.hovertext[0]
    assert f"<b>trial {trial_no}</b>" in hover and "blocks:<br>CBRM24<br>P3:" in hover
    lat = trials.loc[trial_no]
    assert f"latency {lat['latency_ms']:.3f} ms [{lat['latency_ci_low_ms']:.3f}, {lat['latency_ci_high_ms']:.3f}]" in hover
    assert f"params {lat['params']:,}" in hover and f"map {lat['map']:.4f}" in hover
    assert _points(page, "fig-demo-hv") == {"hypervolume": [len(trials)]}
    imp = _points(page, "fig-demo-importance")
    assert imp == {"latency": [4], "mAP": [4]}  # 4 parameters, one bar each per objective
    assert "plotly_click" in page.render()  # the YAML side panel


def test_search_front_on_map50_when_asked(tmp_path: Path) -> None:
    path, fx = write_search_run(tmp_path, accuracy="map50")
    meta = json.loads((path / "meta.json").read_text())
    meta["accuracy_column"] = "map50"
    (path / "meta.json").write_text(json.dumps(meta))
    page = build_page("search", discover(tmp_path).runs)
    fig = dict(page.figures)["fig-demo-trials"]
    assert fig.layout.yaxis.title.text == "map50"
    trials = pd.read_csv(path / "trials.csv").set_index("trial")
    front = next(t for t in fig.data if t.name == "Pareto front")
    assert list(front.y) == list(trials.loc[fx.front].sort_values("latency_ms")["map50"])


def test_hypervolume_history_never_decreases(tmp_path: Path, search_src) -> None:
    path, fx = _copy_search(search_src, tmp_path)
    page = build_page("search", discover(tmp_path).runs)
    hv = dict(page.figures)["fig-demo-hv"].data[0].y
    assert all(b >= a for a, b in itertools.pairwise(hv))
    trials = pd.read_csv(path / "trials.csv")
    ok = trials[(trials["state"] == "COMPLETE") & trials["feasible"] & trials["baseline"].isna()]
    assert hv[-1] == pytest.approx(search_page.hypervolume_2d(ok["latency_ms"].to_numpy(),
                                                              ok["map"].to_numpy(), fx.budget))


def test_importances_degrade_gracefully(tmp_path: Path) -> None:
    path, _ = write_search_run(tmp_path, n_trials=3)
    page = build_page("search", discover(tmp_path).runs)
    assert "fig-demo-importance" not in dict(page.figures)
    assert "need at least 4 completed trials" in page.render()
    (path.parent / "journal.log").unlink()
    page = build_page("search", discover(tmp_path).runs)
    assert "no Optuna storage found" in page.render()


def test_search_page_without_budget(tmp_path: Path, search_src) -> None:
    path, fx = _copy_search(search_src, tmp_path)
    meta = json.loads((path / "meta.json").read_text())
    meta.pop("latency_budget_ms")
    (path / "meta.json").write_text(json.dumps(meta))
    page = build_page("search", discover(tmp_path).runs)
    fig = dict(page.figures)["fig-demo-trials"]
    assert len(fig.layout.shapes) == 0  # no budget, no line; feasibility still from the column
    assert _points(page, "fig-demo-trials")["infeasible (over budget)"] == [fx.n_infeasible]
    assert "1.1 × the slowest trial" in page.render()


# ------------------------------------------------------------------------------------------- lut
def test_lut_accuracy_by_hand() -> None:
    acc = lut_page.accuracy(np.array([1.05, 2.4, 2.7, 4.0]), np.array([1.0, 2.0, 3.0, 4.0]))
    # errors +5 %, +20 %, -10 %, 0 % → 3 of 4 within ±10 %, mean |e| 8.75 %, max 20 %, bias +3.75 %
    assert acc["n"] == 4
    assert acc["within ±10%"] == pytest.approx(0.75)
    assert acc["mean abs error %"] == pytest.approx(8.75)
    assert acc["max abs error %"] == pytest.approx(20.0)
    assert acc["mean error % (bias)"] == pytest.approx(3.75)


def test_lut_page(tmp_path: Path) -> None:
    _, inside = write_lut_run(tmp_path, n=15)
    page = build_page("lut", discover(tmp_path).runs)
    pts = _points(page, "fig-20260101-000000-check")
    assert pts == {"±10% band": [4], "y = x": [2], "within ±10%": [inside], "outside ±10%": [15 - inside],
                   "raw block sum (uncalibrated)": [15]}
    assert "metrics.csv" in page.render()
    assert inside == 7  # errors linspace(-20 %, +20 %, 15): 7 of them within ±10 %


def test_profile_run_with_several_models_and_one_layer_breakdown(tmp_path: Path) -> None:
    """The quickstart's layout: models.csv (models timed in the same rounds, with totals), plus layers.csv
    and counts.csv of one of them (``meta["layers_model"]``)."""
    run = tmp_path / "profile"
    count_dir, _ = write_count_run(tmp_path / "scratch", model="b", n_layers=5)
    prof_dir = write_profile_run(tmp_path / "scratch", model="b", n_layers=5)
    w = RunWriter(run, "profile", threads=1)
    models = pd.DataFrame([{"model": m, "params": 1, "madds": madds, "flops": 2 * madds, "mac_bytes": mac,
                            "estimator": "p10", "estimate_ms": ms, "ci_low_ms": ms * 0.9, "ci_high_ms": ms * 1.1}
                           for m, madds, mac, ms in (("a", 100, 9, 1.0), ("b", 200, 8, 2.0), ("c", 300, 7, 3.0),
                                                     ("d", 400, 6, 4.0))])
    w.save_table(models, "models")
    w.save_table(pd.read_csv(prof_dir / "layers.csv"), "layers")
    w.save_table(pd.read_csv(count_dir / "ops.csv"), "counts")
    w.write_meta(models=["a", "b", "c", "d"], imgsz=64, layers_model="b")
    page = build_page("profile", discover(run).runs)
    fig = dict(page.figures)["fig-models-scatter"]
    assert [len(t.x) for t in fig.data] == [4, 4]
    titles = [a.text for a in fig.layout.annotations]
    assert "Spearman ρ = 1.00 (n = 4)" in titles[0] and "Spearman ρ = -1.00 (n = 4)" in titles[1]
    assert _points(page, "fig-b-64-layer-scatter") == {"layers (madds)": [5], "layers (mac_bytes)": [5]}
    assert _points(page, "fig-b-64-layers")["latency (p10)"] == [5]


def test_budget_text_names_its_source() -> None:
    assert search_page.budget_text({}, 12.0) == "12 ms"
    assert search_page.budget_text({"budget_from": "seed", "budget_scale": 1.0}, 25.41) == "25.4 ms (seed's measured latency)"
    assert search_page.budget_text({"budget_from": "seed", "budget_scale": 0.8}, 20.33) == \
        "20.3 ms (0.8 × seed's measured latency)"
