"""Per-layer capture and timing tables, the torch.profiler op breakdown, and ``latlab profile``."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from latlab.cli import main
from latlab.errors import ConfigError, DeviceError
from latlab.ops.builder import build_model
from latlab.profiling.layerwise import (
    _event_category,
    capture_layer_inputs,
    profile_layers,
    profile_model,
    profile_ops,
)


@pytest.fixture(scope="module")
def yolov5n():
    return build_model("yolov5n")


def test_capture_gives_each_layer_its_real_input(yolov5n):
    x = torch.randn(1, 3, 64, 64)
    layers = capture_layer_inputs(yolov5n, x)
    assert len(layers) == len(yolov5n.layers)
    info = yolov5n.layer_info
    with torch.inference_mode():
        outs = {}
        yolov5n.eval()
        for cl in layers:
            outs[cl.index] = cl.module(*cl.args)
            f = info[cl.index].from_
            if isinstance(f, list):  # Concat / Detect get the list of their sources' outputs
                arg = cl.args[0]
                assert isinstance(arg, list) and len(arg) == len(f)
                for t, j in zip(arg, f, strict=True):
                    assert torch.allclose(t, outs[cl.index - 1 if j == -1 else j])
            elif cl.index > 0:
                assert torch.allclose(cl.args[0], outs[cl.index - 1 if f == -1 else f])
    assert layers[-1].type == "Detect" and [list(t.shape) for t in layers[-1].args[0]] == [
        [1, 64, 8, 8], [1, 128, 4, 4], [1, 256, 2, 2]]


def test_capture_leaves_no_hooks_and_restores_mode(yolov5n):
    yolov5n.train()
    capture_layer_inputs(yolov5n, torch.randn(1, 3, 64, 64))
    assert yolov5n.training
    assert all(not m._forward_pre_hooks for m in yolov5n.modules())
    yolov5n.eval()


def test_plain_sequential_layers_table():
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1))
    lt = profile_layers(net, torch.randn(1, 3, 16, 16), rounds=5, progress=False, check_busy=False)
    assert list(lt.table["module"]) == ["0", "1", "2"]
    assert list(lt.table["type"]) == ["Conv2d", "ReLU", "Conv2d"]
    assert list(lt.table["params"]) == [3 * 8 * 9 + 8, 0, 8 * 8 + 8]
    assert lt.table["share"].sum() == pytest.approx(1.0)
    assert lt.ratio == pytest.approx(lt.sum_ms / lt.end_to_end.estimate_ms)
    assert (lt.table["repeats"] == 1).all() and (lt.table["n"] == 5).all() and lt.end_to_end.n == 5


class ShuffleLike(nn.Module):
    """Hand-countable ops: 1 dense 3×3, 1 depthwise 3×3, 2 pointwise, 1 group 1×1, ReLU, cat, shuffle."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        self.pw1 = nn.Conv2d(8, 8, 1, bias=False)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.pw2 = nn.Conv2d(8, 8, 1, bias=False)
        self.gc = nn.Conv2d(16, 16, 1, groups=4, bias=False)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        a, b = x.chunk(2, 1)
        b = self.pw2(self.dw(self.pw1(b)))
        x = torch.cat([a, b], 1)
        n, c, h, w = x.shape
        x = x.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)
        return self.gc(x)


def test_op_breakdown_categories_and_counts():
    ob = profile_ops(ShuffleLike(), torch.randn(1, 3, 16, 16), iters=4, budget_s=0.3, progress=False)
    calls = dict(zip(ob.by_category["category"], ob.by_category["calls"], strict=True))
    assert calls["conv"] == 1 and calls["depthwise"] == 1 and calls["pointwise"] == 2
    assert calls["group_conv"] == 1 and calls["elementwise"] == 1
    assert calls["data_movement"] >= 3  # chunk, cat, view/transpose/contiguous
    assert ob.by_category["share"].sum() == pytest.approx(1.0)
    assert ob.profiled_ms == pytest.approx(ob.by_op["time_ms"].sum())
    assert ob.ratio == pytest.approx(ob.profiled_ms / ob.end_to_end.estimate_ms)
    assert set(ob.by_group["group"]) <= {"conv", "elementwise", "data_movement", "other"}


@pytest.mark.parametrize(("shapes", "cat"), [
    ([[1, 32, 8, 8], [32, 1, 3, 3]], "depthwise"),
    ([[1, 32, 8, 8], [64, 8, 1, 1]], "group_conv"),
    ([[1, 32, 8, 8], [64, 32, 1, 1]], "pointwise"),
    ([[1, 32, 8, 8], [64, 32, 3, 3]], "conv"),
])
def test_conv_category_from_profiler_shapes(shapes, cat):
    assert _event_category("aten::conv2d", shapes) == cat


def test_profile_model_rejects_bad_imgsz_and_backend():
    with pytest.raises(ConfigError, match="imgsz 100 is not a multiple of the model's max stride 32"):
        profile_model("yolov5n", imgsz=100)
    with pytest.raises(DeviceError, match="--backend onnxruntime"):
        profile_model("yolov5n", backend="onnxruntime", per_layer=True)


def test_cli_profile_writes_run_folder(tmp_path, capsys):
    out = tmp_path / "run"
    rc = main(["profile", "yolov5n", "--imgsz", "64", "--budget", "0.3", "--per-layer", "--json",
               "--out", str(out)])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["meta"]["estimator"] == "p10" and len(payload["layers"]) == 25
    assert {"latency.csv", "layers.csv", "meta.json"} <= {p.name for p in out.iterdir()}
    meta = json.loads((out / "meta.json").read_text())
    assert meta["fingerprint"]["threads"] == 1 and "layers_sum_over_e2e" in meta


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cli_cuda_without_gpu_is_one_line_exit_2(capsys):
    assert main(["profile", "yolov5n", "--device", "cuda"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no CUDA GPU is available" in err and len(err.splitlines()) == 1


def test_cli_compare_writes_ratio_and_both_models(tmp_path, capsys):
    out = tmp_path / "cmp"
    rc = main(["compare", "yolov5n", "yolov5n", "--imgsz", "64", "--budget", "0.3", "--json", "--out", str(out)])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    c = payload["comparison"]
    assert (c["model_a"], c["model_b"]) == ("A:yolov5n", "B:yolov5n")  # one config twice: an A/A check
    assert c["ratio"] == pytest.approx(c["a_ms"] / c["b_ms"]) and c["ci_low"] <= c["ratio"] <= c["ci_high"]
    assert [m["model"] for m in payload["models"]] == ["A:yolov5n", "B:yolov5n"]
    assert {"comparison.csv", "models.csv", "meta.json"} <= {p.name for p in out.iterdir()}
    assert json.loads((out / "meta.json").read_text())["job"] == "compare"


def test_cli_compare_names_the_model_whose_imgsz_is_wrong(capsys):
    assert main(["compare", "mobilenet_v2", "yolov5n", "--imgsz", "100"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == ["error: yolov5n: imgsz 100 is not a multiple of the model's max stride 32; try 96"]
