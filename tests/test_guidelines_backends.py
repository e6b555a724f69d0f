"""``latlab guidelines`` under several backends at once: one combined table, one verdict set per backend,
the verdict matrix, rows a backend refuses recorded as not measured, errors before any timing, and the
combined report page. Tiny networks and budgets; no timing figure is asserted.
"""

from __future__ import annotations

import json
import math
from typing import ClassVar

import pandas as pd
import pytest
from torch import nn

from latlab.cli import main
from latlab.errors import ConfigError, DeviceError
from latlab.guidelines import run as guideline_run
from latlab.guidelines.experiments import configurations
from latlab.guidelines.run import parse_backends, run_guidelines, time_table
from latlab.guidelines.verdict import DOES_NOT_HOLD, HOLDS, NOT_MEASURED, PARTLY, decide, verdict_matrix
from latlab.profiling.backends import TorchCPURunner, get_backend, register_backend, unregister_backend
from latlab.report.build import build_page
from latlab.report.loaders import discover

REFUSER = "toy-refuses-g8"
TINY = {"quick": True, "imgsz": 8, "blocks": 1, "budget_s": 0.3, "progress": False}
VERDICTS = {HOLDS, PARTLY, DOES_NOT_HOLD}


def _groups(model: nn.Module) -> set[int]:
    return {m.groups for m in model.modules() if isinstance(m, nn.Conv2d)}


@pytest.fixture(scope="module")
def refuser():
    """An eager-torch backend registered as INT8 that refuses any network with an 8-group convolution,
    like a quantizer that cannot take a grouped conv."""

    @register_backend(REFUSER, devices=("cpu",), precision="int8",
                      description="Eager torch that refuses 8-group convolutions (test only).")
    class RefusesG8(TorchCPURunner):
        refused: ClassVar[set[int]] = {8}

        def prepare(self, model, example_input):
            bad = _groups(model) & self.refused
            if bad:
                raise RuntimeError(f"grouped convolution with {min(bad)} groups is not supported\nsecond line")
            return super().prepare(model, example_input)

    try:
        yield RefusesG8
    finally:
        unregister_backend(REFUSER)


@pytest.fixture(scope="module")
def combined(refuser, tmp_path_factory):
    """G2 (the grouped-conv table) under eager torch and the refusing backend, saved as a run folder."""
    res = run_guidelines("G2", backend=f"torch,{REFUSER}", **TINY)
    root = tmp_path_factory.mktemp("results")
    path = res.save(root / "guidelines" / "combined")
    return res, root, path


# ------------------------------------------------------------------------------------ parsing, errors
def test_parse_backends_keeps_order_and_drops_repeats():
    assert parse_backends("torch, openvino,torch") == ("torch", "openvino")
    assert parse_backends(["onnxruntime-int8"]) == ("onnxruntime-int8",)
    with pytest.raises(ConfigError, match="--backend names no backend"):
        parse_backends(" , ")


def _no_timing(*args, **kwargs):
    raise AssertionError("timed before checking every backend")


def test_unknown_backend_in_a_list_fails_before_timing(monkeypatch, capsys):
    monkeypatch.setattr(guideline_run, "run_interleaved", _no_timing)
    with pytest.raises(DeviceError, match="unknown backend 'nope': expected one of torch"):
        run_guidelines("G4", backend="torch,nope", **TINY)
    assert main(["guidelines", "--quick", "--only", "G4", "--backend", "torch,nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "unknown backend 'nope'" in err and len(err.splitlines()) == 1


def test_missing_extra_in_a_list_fails_before_timing(monkeypatch):
    name = "toy-needs-extra"
    register_backend(name, devices=("cpu",), extra="toyextra", requires=("latlab_no_such_module",),
                     description="Needs a module that is not installed (test only).")(type("NeedsExtra",
                                                                                         (TorchCPURunner,), {}))
    monkeypatch.setattr(guideline_run, "run_interleaved", _no_timing)
    try:
        with pytest.raises(DeviceError, match=r"--backend toy-needs-extra needs the toyextra extra .*"
                                              r"pip install latlab\[toyextra\]"):
            run_guidelines("G4", backend=f"torch,{name}", **TINY)
    finally:
        unregister_backend(name)


# ------------------------------------------------------------------------------------ verdict logic
def _rows(rel: list[float], reasons: list[str]) -> pd.DataFrame:
    cfgs = configurations("G2", 1, "arm")
    return pd.DataFrame({"row": [c.row for c in cfgs], "key": [c.key for c in cfgs],
                         "is_baseline": [c.is_baseline for c in cfgs], "rel_latency": rel,
                         "rel_ci_low": rel, "rel_ci_high": rel, "not_measured": reasons})


def test_decide_leaves_out_rows_not_measured():
    # g=1 baseline; g=2, g=4 clearly slower (points, CI = the point); g=8 refused → judged on 2 rows
    v = decide("G2", _rows([1.0, 1.2, 1.5, math.nan], ["", "", "", "no 8 groups"]))
    assert v.verdict == HOLDS and v.n_rows == 2
    assert "Not measured (left out): g=8 (no 8 groups)" in v.reason


def test_decide_without_the_baseline_is_not_measured():
    v = decide("G2", _rows([math.nan] * 4, ["refused", "", "", ""]))
    assert v.verdict == NOT_MEASURED and "baseline row g=1" in v.reason and "g=1 (refused)" in v.reason


def test_verdict_matrix_one_column_per_backend():
    verdicts = pd.DataFrame({"backend": ["torch", "torch", "openvino", "openvino"],
                             "guideline": ["G1", "G2", "G1", "G2"], "width": [1, 1, 1, 1],
                             "verdict": [HOLDS, PARTLY, DOES_NOT_HOLD, NOT_MEASURED]})
    m = verdict_matrix(verdicts)
    assert list(m.columns) == ["guideline", "width", "torch", "openvino"]
    assert m.to_dict(orient="records") == [
        {"guideline": "G1", "width": "1", "torch": HOLDS, "openvino": DOES_NOT_HOLD},
        {"guideline": "G2", "width": "1", "torch": PARTLY, "openvino": NOT_MEASURED}]


def test_time_table_records_every_refused_configuration(refuser):
    refuser.refused = {1, 2, 4, 8}  # every G2 row
    try:
        cfgs = configurations("G2", 1, "arm", blocks=1)
        models = {c.name: c.build() for c in cfgs}
        inputs = {c.name: guideline_run.torch.randn(1, c.in_channels, 4, 4) for c in cfgs}
        run, refused = time_table(models, inputs, backend=REFUSER, device="cpu", threads=1, budget_s=0.1,
                                  progress=False)
    finally:
        refuser.refused = {8}
    assert run is None and set(refused) == set(models)
    assert refused["G2 g=4 ×1"] == "RuntimeError: grouped convolution with 4 groups is not supported"


# ------------------------------------------------------------------------------------ combined run
def test_combined_run_has_every_backend_and_a_verdict_column_each(combined):
    res, _root, path = combined
    assert res.backends == ("torch", REFUSER)
    df = res.tables["G2"]
    assert len(df) == 8 and list(dict.fromkeys(df["backend"])) == ["torch", REFUSER]
    assert set(df.loc[df["backend"] == REFUSER, "precision"]) == {"int8"}
    assert set(df.loc[df["backend"] == "torch", "precision"]) == {"fp32"}
    for _b, part in df.groupby("backend"):  # each backend relative to its own baseline row
        assert part.loc[part["is_baseline"], "rel_latency"].tolist() == [1.0]
    refused = df[df["not_measured"] != ""]
    assert refused[["backend", "row"]].values.tolist() == [[REFUSER, "g=8"]]
    assert math.isnan(refused["estimate_ms"].item()) and math.isnan(refused["rel_latency"].item())
    assert refused["not_measured"].item() == "RuntimeError: grouped convolution with 8 groups is not supported"
    assert df.loc[df["not_measured"] == "", "estimate_ms"].notna().all()

    v = res.verdicts
    assert v[["backend", "precision", "guideline"]].values.tolist() == [["torch", "fp32", "G2"],
                                                                       [REFUSER, "int8", "G2"]]
    assert set(v["verdict"]) <= VERDICTS
    assert v.loc[v["backend"] == REFUSER, "n_rows"].item() == 2
    assert "Not measured (left out): g=8" in v.loc[v["backend"] == REFUSER, "reason"].item()
    matrix = res.verdict_matrix()
    assert list(matrix.columns) == ["guideline", "width", "torch", REFUSER] and len(matrix) == 1
    assert res.not_measured() == [f"{REFUSER} G2 g=8 ×1: RuntimeError: grouped convolution with 8 groups is "
                                  "not supported"]

    assert (path / "verdict_matrix.csv").exists()
    meta = json.loads((path / "meta.json").read_text())
    assert meta["settings"]["backends"] == ["torch", REFUSER]
    assert set(meta["verdicts"]) == {"torch G2 ×1", f"{REFUSER} G2 ×1"}
    assert meta["not_measured"] == res.not_measured()


def test_single_backend_run_keeps_its_files_and_keys(tmp_path):
    res = run_guidelines("G4", **TINY)
    path = res.save(tmp_path / "one")
    assert res.backends == ("torch",) and not (path / "verdict_matrix.csv").exists()
    assert set(json.loads((path / "meta.json").read_text())["verdicts"]) == {"G4 ×1"}


def test_report_page_shows_the_combined_view(combined):
    _res, root, _path = combined
    page = build_page("guidelines", discover(root).runs)
    html = page.render()
    assert "Verdicts per runtime" in html and "torch" in html and REFUSER in html
    assert "not measured: toy-refuses-g8 G2 g=8 ×1" in html
    figs = [fig for div, fig in page.figures if "backends" in div]
    assert len(figs) == 1 and {t.name for t in figs[0].data} == {"torch", REFUSER, "paper"}


def test_cli_prints_the_verdicts_side_by_side(refuser, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["guidelines", "--quick", "--only", "G2", "--imgsz", "8", "--budget", "0.3",
                 "--backend", f"torch,{REFUSER}", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Verdicts per runtime" in text and REFUSER in text and "not measured" in text
    assert list(pd.read_csv(out / "verdict_matrix.csv").columns) == ["guideline", "width", "torch", REFUSER]


# ------------------------------------------------------------------------------------ real runtimes
@pytest.mark.parametrize("backend", ["onnxruntime-int8", "openvino-int8",
                                     pytest.param("executorch", marks=pytest.mark.slow)])  # lowering 8 programs
def test_runtimes_run_every_grouped_conv_row(backend):
    try:
        get_backend(backend).check_installed()
    except DeviceError as exc:
        pytest.skip(str(exc))
    res = run_guidelines("G2", backend=f"torch,{backend}", **TINY)
    df = res.tables["G2"]
    assert (df["not_measured"] == "").all() and df["rel_latency"].notna().all()
    assert set(res.verdicts.loc[res.verdicts["backend"] == backend, "verdict"]) <= VERDICTS
