"""``latlab profile --pipeline / --batch / --memory``: letterbox against a hand calculation, NMS load on
hand-built outputs, stage shares, the throughput identity, RSS growth, and one-line errors for bad options."""

import json
import math

import numpy as np
import pytest
import torch
from test_hostile_bounds import TINY, model_yaml, one_line

from latlab.cli import main
from latlab.detection.data.loader import PAD_VALUE
from latlab.detection.loss import find_detect
from latlab.detection.pipeline import (
    E2E,
    STAGES,
    model_prediction,
    nms_candidates,
    preprocess,
    profile_pipeline,
)
from latlab.errors import ConfigError
from latlab.ops.builder import build_model
from latlab.profiling.memory import peak_memory
from latlab.profiling.throughput import batch_sweep, parse_batches

FAST = {"imgsz": 64, "budget_s": 0.3, "progress": False}
PAD = PAD_VALUE / 255


def _always_detects(tmp_path) -> torch.nn.Module:
    """TINY (nc=2, 2 anchors on strides 8/16/32) with zero Detect weights and logits of +8: every box and
    class scores sigmoid(8)² ≈ 0.9993, so all of them reach NMS."""
    model = build_model(model_yaml(tmp_path, TINY))
    for conv in find_detect(model).m:
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.constant_(conv.bias, 8.0)
    return model.eval()


@pytest.mark.parametrize("hw,rows,cols", [((720, 1280), (14, 50), (0, 64)),  # r = 64/1280: 36×64, top 14
                                          ((100, 50), (0, 64), (16, 48))])  # r = 0.64: 64×32, left 16
def test_letterbox_shape_and_padding_match_a_hand_calculation(hw, rows, cols):
    frame = np.full((*hw, 3), 200, np.uint8)
    x = preprocess(frame, 64)
    assert x.shape == (1, 3, 64, 64) and x.dtype == torch.float32
    inside = torch.zeros(64, 64, dtype=torch.bool)
    inside[rows[0]:rows[1], cols[0]:cols[1]] = True
    assert torch.allclose(x[0][:, inside], torch.tensor(200 / 255))  # a flat image stays flat when resized
    assert torch.allclose(x[0][:, ~inside], torch.tensor(PAD))


def test_preprocess_rejects_a_grey_frame():
    with pytest.raises(ConfigError, match="expected height×width×3"):
        preprocess(np.zeros((72, 128), np.uint8), 64)


def test_nms_sees_every_box_of_a_model_that_always_detects(tmp_path):
    model = _always_detects(tmp_path)
    pred = model_prediction(model(preprocess(np.zeros((36, 64, 3), np.uint8), 64)))
    cells = 8 * 8 + 4 * 4 + 2 * 2
    assert pred.shape == (1, 2 * cells, 5 + 2)
    assert nms_candidates(pred, 0.25) == 2 * cells * 2  # anchors × cells × classes
    assert nms_candidates(pred, 0.9995) == 0  # 0.9993 < 0.9995
    # a runner's output in any form (ONNX Runtime: list of arrays; OpenVINO: a mapping) gives the same tensor
    assert torch.equal(model_prediction([pred.numpy()]), pred)
    assert torch.equal(model_prediction({"out": pred.numpy()}), pred)


def test_pipeline_stage_shares_sum_to_one(tmp_path):
    model = _always_detects(tmp_path)
    p = profile_pipeline(model, frame=np.zeros((72, 128, 3), np.uint8), conf_thres=0.25, estimator="min",
                         **{**FAST, "budget_s": 1.0})
    assert list(p.table["stage"]) == [*STAGES, E2E]
    stages = p.table[p.table["stage"] != E2E]
    assert stages["share"].sum() == pytest.approx(1.0)
    assert (stages["estimate_ms"] > 0).all()
    # the stages timed alone roughly add up to the whole. ``min``: on a shared machine a call of a few ms is
    # often preempted for a whole time slice, and the longest call (end-to-end) most often
    assert 0.4 < p.stage_sum_over_e2e < 1.6
    assert p.boxes_in == 336 and p.detections > 0 and (p.table["conf_thres"] == 0.25).all()
    assert p.meta()["frame_hw"] == [72, 128] and p.meta()["speed_reference"] is False


def test_pipeline_runs_the_model_through_the_chosen_backend(tmp_path):
    pytest.importorskip("onnxruntime")
    p = profile_pipeline(_always_detects(tmp_path), frame=np.zeros((72, 128, 3), np.uint8), conf_thres=0.25,
                         backend="onnxruntime", **FAST)
    assert set(p.table["backend"]) == {"onnxruntime"}
    assert p.table["runtime_version"].iloc[0].startswith("onnxruntime ")
    assert p.boxes_in == 336  # NMS sees ONNX Runtime's outputs, which match the torch model's


def test_pipeline_rejects_a_classifier():
    with pytest.raises(ConfigError, match="needs a detector"):
        profile_pipeline("mobilenet_v3_small", frame=np.zeros((36, 64, 3), np.uint8), **FAST)


def test_batch_sweep_rows_and_images_per_second(tmp_path):
    model = build_model(model_yaml(tmp_path, TINY))
    s = batch_sweep(model, "1,2", **FAST)
    t = s.table
    assert list(t["batch"]) == [1, 2]
    assert np.allclose(t["images_s"], 1e3 * t["batch"] / t["estimate_ms"])
    assert np.allclose(t["per_image_ms"], t["estimate_ms"] / t["batch"])
    assert (t["images_s_low"] <= t["images_s"]).all() and (t["images_s"] <= t["images_s_high"]).all()


@pytest.mark.parametrize("text,bad", [("0,x", "'0'"), ("1,,2", "''"), ("2,-1", "'-1'"), ("a", "'a'")])
def test_bad_batch_lists_are_refused(text, bad):
    with pytest.raises(ConfigError, match=f"--batch '{text}': {bad} is not a batch size"):
        parse_batches(text)


def test_batch_list_keeps_order_and_drops_repeats():
    assert parse_batches("8, 1,2,1") == (8, 1, 2)


def test_peak_memory_on_cpu_grows(tmp_path):
    r = peak_memory(build_model(model_yaml(tmp_path, TINY)), imgsz=64, iters=2)
    row = r.table.iloc[0]
    assert row["rss_growth_mb"] > 0 and row["rss_peak_mb"] >= row["rss_baseline_mb"] > 0
    assert math.isnan(row["cuda_max_allocated_mb"]) and row["method"].startswith("in-process")


@pytest.mark.cuda
def test_peak_memory_and_pipeline_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    model = _always_detects(tmp_path)
    row = peak_memory(model, imgsz=64, iters=2, device="cuda").table.iloc[0]
    assert row["cuda_max_allocated_mb"] > 0
    p = profile_pipeline(model, frame=np.zeros((72, 128, 3), np.uint8), device="cuda", conf_thres=0.25, **FAST)
    assert p.boxes_in == 336 and set(p.table["device"]) == {"cuda"}


def test_cli_bad_batch_is_one_line(capsys):
    line = one_line(capsys, "profile", "yolov5n", "--imgsz", "64", "--batch", "0,x")
    assert "--batch '0,x': '0' is not a batch size" in line


def test_cli_bad_conf_is_one_line(capsys):
    assert "--conf 1.5: expected a threshold in [0, 1]" in one_line(capsys, "profile", "yolov5n", "--pipeline",
                                                                    "--conf", "1.5")


def test_cli_json_writes_every_table(tmp_path, capsys):
    cfg = model_yaml(tmp_path, TINY)
    out = tmp_path / "run"
    rc = main(["profile", str(cfg), "--imgsz", "64", "--budget", "0.2", "--pipeline", "--batch", "1,2",
               "--memory", "--json", "--out", str(out)])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert [r["stage"] for r in payload["pipeline"]] == [*STAGES, E2E]
    assert [r["batch"] for r in payload["throughput"]] == [1, 2]
    assert payload["memory"][0]["rss_growth_mb"] > 0
    assert payload["meta"]["pipeline"]["conf_thres"] == 0.001
    for name in ("pipeline", "throughput", "memory", "latency"):
        assert (out / f"{name}.csv").is_file()
    assert json.loads((out / "meta.json").read_text())["throughput"]["batches"] == [1, 2]
