"""Accuracy after conversion: ``evaluate_backend`` (``latlab val --backend``), the conversion drop table and
``search run --accuracy-backend``, on 64 px built-in data and a yolov5n whose objectness is raised so an
untrained head still emits boxes."""

from __future__ import annotations

import math

import pytest
import torch
import yaml
from search_fixtures import TINY_SPACE

from latlab.cli import main
from latlab.detection import converted
from latlab.detection.converted import conversion_drops, evaluate_backend, installed_backends
from latlab.detection.data import load_dataset, make_dataset
from latlab.detection.evaluate import predict
from latlab.detection.loss import find_detect
from latlab.errors import DeviceError, SearchError
from latlab.ops.builder import build_model
from latlab.profiling.backends import register_backend, unregister_backend
from latlab.profiling.runtimes.calibration import calibration_for
from latlab.search.study import SearchSettings, load_search_study, run_search

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
IMGSZ = 64


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = make_dataset(imgsz=IMGSZ, n_train=16, n_val=8, preset="shapes4-easy",
                          root=tmp_path_factory.mktemp("data"))
    return load_dataset(folder)


@pytest.fixture(scope="module")
def model(data):
    torch.manual_seed(0)
    m = build_model("yolov5n", nc=data.nc)
    head = find_detect(m)
    with torch.no_grad():  # objectness logit +6: ~every anchor is a box above conf_thres, so NMS has work
        for conv in head.m:
            conv.bias.view(head.na, -1)[:, 4] += 6
    return m.eval()


def _recorded(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]]:
    """Record every (uint8 batch, decoded predictions before NMS, detections) evaluate_backend scores."""
    seen: list = []
    score, nms = converted.score_predictions, converted.non_max_suppression
    decoded: list = []

    def recording_nms(out, *args, **kwargs):
        decoded.append(out)
        return nms(out, *args, **kwargs)

    def recording(predictor, *args, **kwargs):
        def wrapped(imgs):
            dets = predictor(imgs)
            seen.append((imgs, decoded[-1], dets))
            return dets
        return score(wrapped, *args, **kwargs)

    monkeypatch.setattr(converted, "score_predictions", recording)
    monkeypatch.setattr(converted, "non_max_suppression", recording_nms)
    return seen


def test_onnxruntime_fp32_gives_torch_boxes_and_map(monkeypatch, data, model):
    ref = evaluate_backend(model, data, "torch", imgsz=IMGSZ, batch=3)
    seen = _recorded(monkeypatch)
    got = evaluate_backend(model, data, "onnxruntime", imgsz=IMGSZ, batch=3)
    # 8 images at the runner's fixed batch 3: 3 + 3 + a last batch of 2, which is still scored
    assert [imgs.shape[0] for imgs, _, _ in seen] == [3, 3, 2]
    assert got["n_images"] == ref["n_images"] == 8 and got["n_preds"] == ref["n_preds"] > 0
    assert abs(got["map"] - ref["map"]) < 1e-3 and abs(got["map50"] - ref["map50"]) < 1e-3
    for imgs, boxes, dets in seen:  # hand check: eager torch's own boxes and scores for the same images
        with torch.inference_mode():
            want = model(imgs.float() / 255)
        torch.testing.assert_close(boxes, want, rtol=1e-4, atol=1e-4)
        assert [len(d) for d in dets] == [len(d) for d in predict(model, imgs.float() / 255)]
    assert got["backend"] == "onnxruntime" and got["precision"] == "fp32"
    assert got["runtime"].startswith("onnxruntime ") and got["calibration"] is None
    assert ref["precision"] == "fp32" and ref["runtime"] == f"torch {torch.__version__}"


def test_int8_outputs_finite_and_map_reported(monkeypatch, data, model):
    seen = _recorded(monkeypatch)
    got = evaluate_backend(model, data, "onnxruntime-int8", imgsz=IMGSZ, batch=4)
    assert got["precision"] == "int8" and math.isfinite(got["map"]) and 0 <= got["map"] <= 1
    assert got["n_preds"] > 0 and all(torch.isfinite(boxes).all() for _, boxes, _ in seen)
    # calibrated on this dataset's training split, not the built-in default
    assert got["calibration"].startswith(f"train:{data.name}:") and got["convert_s"] >= 0


def test_calibration_source_is_restored(data, model):
    before = calibration_for(torch.zeros(1, 3, IMGSZ, IMGSZ), n=2).name
    evaluate_backend(model, data, "onnxruntime", imgsz=IMGSZ, batch=8)
    assert calibration_for(torch.zeros(1, 3, IMGSZ, IMGSZ), n=2).name == before


def test_drop_table_has_a_zero_torch_row_and_the_fp32_control(data, model):
    rows = conversion_drops("yolov5n", model, data, ["onnxruntime"], imgsz=IMGSZ, batch=8)
    assert [r.backend for r in rows] == ["torch", "onnxruntime"]
    assert rows[0].drop == 0 and abs(rows[1].drop) < 1e-3 and abs(rows[1].drop50) < 1e-3
    assert "onnxruntime-int8" in installed_backends("int8") and "torch" not in installed_backends("int8")


def test_a_backend_that_cannot_convert_the_model_is_a_row_not_a_crash(monkeypatch, data, model):
    """ExecuTorch's XNNPACK lowering refused a trained detector's head once (``ChannelsLastTaggedReshapePass``):
    the drop table keeps that backend as a row with NaN scores and the reason, and scores the others."""
    real = converted.evaluate_backend

    def refusing(model, dataset, backend, **kw):
        if backend == "onnxruntime":
            raise RuntimeError("The same constant data tensor can't be used in NHWC format\nsecond line")
        return real(model, dataset, backend, **kw)

    monkeypatch.setattr(converted, "evaluate_backend", refusing)
    rows = conversion_drops("yolov5n", model, data, ["onnxruntime"], imgsz=IMGSZ, batch=8)
    assert [r.backend for r in rows] == ["torch", "onnxruntime"]
    assert rows[0].error == "" and rows[0].drop == 0
    assert math.isnan(rows[1].map) and math.isnan(rows[1].drop)
    assert rows[1].error == "RuntimeError: The same constant data tensor can't be used in NHWC format"

def test_val_unknown_backend_and_missing_extra_are_one_line_errors(tmp_path, capsys):
    weights = tmp_path / "w.pt"  # never read: the backend is checked first
    assert main(["val", "yolov5n", "--weights", str(weights), "--backend", "nosuch", "--imgsz", "64"]) != 0
    err = capsys.readouterr().err.strip()
    assert "unknown backend 'nosuch'" in err and "onnxruntime-int8" in err and len(err.splitlines()) == 1

    @register_backend("toy-missing", devices=("cpu",), extra="toyextra", requires=("latlab_no_such_module",),
                      description="needs a module that does not exist (test only)")
    class Missing(converted.get_backend("onnxruntime").runner):
        pass

    try:
        assert main(["val", "yolov5n", "--weights", str(weights), "--backend", "toy-missing"]) != 0
    finally:
        unregister_backend("toy-missing")
    err = capsys.readouterr().err.strip()
    assert "pip install latlab[toyextra]" in err and len(err.splitlines()) == 1


def test_accuracy_backend_settings_are_checked():
    with pytest.raises(DeviceError, match="unknown backend 'nosuch'"):
        SearchSettings(mode="pareto", accuracy_backend="nosuch").check()
    with pytest.raises(SearchError, match="trains nothing"):
        SearchSettings(mode="pareto", accuracy="synflow", accuracy_backend="onnxruntime").check()


@pytest.mark.slow
def test_search_records_fp32_and_backend_map_and_refuses_another_backend(tmp_path, data):
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(TINY_SPACE))
    s = SearchSettings(mode="pareto", n_trials=1, space=space, imgsz=IMGSZ, epochs=1, data=str(data.root),
                       baselines=(), sampler="random", results_root=tmp_path / "results", study="acc",
                       latency_max_time_s=0.5, batch=8, accuracy_backend="onnxruntime")
    res = run_search(s)
    row = res.trials.iloc[0]
    assert row["state"] == "COMPLETE"
    st, _ = load_search_study("acc", str(tmp_path / "results" / "search" / "acc" / "journal.log"))
    attrs = st.trials[0].user_attrs
    assert attrs["accuracy_backend"] == "onnxruntime" and attrs["accuracy_precision"] == "fp32"
    assert attrs["accuracy_runtime"].startswith("onnxruntime ")
    assert math.isfinite(attrs["map_fp32"]) and abs(attrs["map"] - attrs["map_fp32"]) < 1e-3
    assert st.trials[0].values[1] == attrs["map"]  # the objective is the backend's mAP
    assert st.user_attrs["latlab.train_budget"]["accuracy_backend"] == "onnxruntime"
    with pytest.raises(SearchError, match="accuracy_backend"):
        run_search(SearchSettings(**{**s.__dict__, "accuracy_backend": "torch", "resume": True}))
