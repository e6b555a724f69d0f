"""``latlab report compare-studies``: two studies' fronts and their block choices, against hand-computed shares.

Study ``int8`` (latency on onnxruntime-int8) and study ``fp32`` (eager torch) each get three finished trials
in a journal; in each the third is dominated, so the fronts are trials 0 and 1:

- int8 front: P3.block pplcnet, pplcnet; P4.block ghost, mobilenetv3; stem.type CBRM, CBRM
- fp32 front: P3.block shufflenetv2, c3;  P4.block ghost, ghost;       stem.type CBRM, CBRM

Total variation by hand: P3.block ½(1 + ½ + ½) = 1.0; P4.block ½(|½−1| + ½) = 0.5; stem.type 0.
"""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from latlab.cli import main
from latlab.errors import SearchError
from latlab.report.study_diff import compare_studies, total_variation, value_shares
from latlab.search.storage import open_storage

STUDIES = {
    "int8": ("onnxruntime-int8", [({"P3.block": "pplcnet", "P4.block": "ghost", "stem.type": "CBRM"}, 1.0, 1.0),
                                  ({"P3.block": "pplcnet", "P4.block": "mobilenetv3", "stem.type": "CBRM"}, 2.0, 2.0),
                                  ({"P3.block": "c3", "P4.block": "ghost", "stem.type": "Conv"}, 3.0, 1.5)]),
    "fp32": ("torch", [({"P3.block": "shufflenetv2", "P4.block": "ghost", "stem.type": "CBRM"}, 1.0, 1.0),
                       ({"P3.block": "c3", "P4.block": "ghost", "stem.type": "CBRM"}, 2.0, 2.0),
                       ({"P3.block": "pplcnet", "P4.block": "mobilenetv3", "stem.type": "Conv"}, 3.0, 1.0)]),
}


def _make_studies(root: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for name, (backend, trials) in STUDIES.items():
        info = open_storage(None, name, root)
        study = optuna.create_study(study_name=name, storage=info.storage, directions=["minimize", "maximize"])
        study.set_user_attr("latlab.objectives", ["latency_ms", "accuracy_score"])
        study.set_user_attr("latlab.mode", "pareto")
        for point, latency, score in trials:
            attrs = {"point": point, "arch": "/".join(point.values()), "latency_ms": latency,
                     "latency_backend": backend, "accuracy_score": score, "accuracy_estimator": "params",
                     "feasible": True}
            study.add_trial(optuna.trial.create_trial(values=[latency, score], user_attrs=attrs))


def test_shares_and_distance_by_hand():
    points = [{"a": 1}, {"a": 1}, {"a": 2}, {"b": 0}]
    assert value_shares(points, "a") == pytest.approx({"1": 2 / 3, "2": 1 / 3})
    assert total_variation({"x": 0.5, "y": 0.5}, {"x": 1.0}) == pytest.approx(0.5)
    assert total_variation({"x": 1.0}, {"y": 1.0}) == 1.0 and total_variation({}, {}) == 0.0


def test_fronts_and_differing_dimensions(tmp_path):
    root = tmp_path / "results"
    _make_studies(root)
    comp = compare_studies("int8", "fp32", root=root)
    assert sorted(comp.a.members["trial"]) == [0, 1] and sorted(comp.b.members["trial"]) == [0, 1]
    assert (comp.a.backend, comp.a.precision) == ("onnxruntime-int8", "int8")
    assert (comp.b.backend, comp.b.precision) == ("torch", "fp32")
    dist = {d.dimension: d.distance for d in comp.dimensions}
    assert dist == pytest.approx({"P3.block": 1.0, "P4.block": 0.5, "stem.type": 0.0})
    assert [d.dimension for d in comp.dimensions if d.differs] == ["P3.block", "P4.block"]
    assert comp.dimensions[1].share_a == {"ghost": 0.5, "mobilenetv3": 0.5}
    page = comp.page.read_text()
    assert comp.page == root / "search" / "compare-int8-vs-fp32.html"
    assert "onnxruntime-int8" in page and "DIFFERS" in page and "P3.block" in page
    selftest_traces = page.count('"name":"int8 members"') + page.count('"name":"fp32 members"')
    assert selftest_traces == 2


def test_top_k_compares_the_most_accurate_trials(tmp_path):
    root = tmp_path / "results"
    _make_studies(root)
    comp = compare_studies("int8", "fp32", root=root, top_k=1)
    assert list(comp.a.members["trial"]) == [1] and list(comp.b.members["trial"]) == [1]
    dist = {d.dimension: d.distance for d in comp.dimensions}
    assert dist == pytest.approx({"P3.block": 1.0, "P4.block": 1.0, "stem.type": 0.0})


def test_cli_writes_the_page_and_bad_inputs_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _make_studies(Path("results"))
    out = tmp_path / "cmp.html"
    assert main(["report", "compare-studies", "int8", "fp32", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "P3.block, P4.block" in printed
    assert main(["report", "compare-studies", "int8", "nosuch"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no search journal at" in err and "nosuch" in err
    assert main(["report", "compare-studies", "int8", "fp32", "--top-k", "0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--top-k 0" in err
    with pytest.raises(SearchError):
        compare_studies("int8", "fp32", root=Path("results"), top_k=-1)


def test_report_of_a_folder_still_works_beside_the_subcommand(tmp_path, capsys):
    assert main(["report", str(tmp_path)]) == 2  # an empty folder: the pages command's own one-line error
    assert "\n" not in capsys.readouterr().err.strip()
