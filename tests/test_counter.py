"""The dispatch-mode counter against hand calculations, and its promise not to touch the model."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules import module as nn_module

from latlab.cli import main as cli_main
from latlab.errors import ConfigError, UnknownModelError
from latlab.profiling.categories import CATEGORIES, conv_category, op_category
from latlab.profiling.counter import COLUMNS, count, count_model

CONV_CATS = ("conv", "pointwise", "depthwise", "group_conv")


def rows(result, op):
    return result.ops[result.ops["op"] == op]


# ----------------------------------------------------------------------------- hand-made modules
class ShuffleUnitS1(nn.Module):
    """ShuffleNetV2 stride-1 unit (paper Fig. 3c), written out independently of latlab.ops."""

    def __init__(self, c):
        super().__init__()
        b = c // 2
        self.branch2 = nn.Sequential(
            nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
            nn.Conv2d(b, b, 3, 1, 1, groups=b, bias=False), nn.BatchNorm2d(b),
            nn.Conv2d(b, b, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(inplace=True),
        )

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        out = torch.cat((x1, self.branch2(x2)), dim=1)
        n, c, h, w = out.shape
        return out.view(n, 2, c // 2, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class Ghost(nn.Module):
    """Ghost module (GhostNet, ratio 2): 1×1 primary conv to c2/2, cheap 3×3 depthwise, concatenated."""

    def __init__(self, c1, c2):
        super().__init__()
        self.primary = nn.Conv2d(c1, c2 // 2, 1, bias=False)
        self.cheap = nn.Conv2d(c2 // 2, c2 // 2, 3, 1, 1, groups=c2 // 2, bias=False)

    def forward(self, x):
        y = self.primary(x)
        return torch.cat((y, self.cheap(y)), 1)


class Functional(nn.Module):
    """Only functional calls: F.conv2d with its own weight, torch.matmul, F.interpolate."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 4, 3, 3))
        self.proj = nn.Parameter(torch.randn(16, 5))

    def forward(self, x):
        y = F.conv2d(x, self.weight, padding=1)  # 1x8x16x16
        y = F.interpolate(y, scale_factor=2.0, mode="nearest")  # 1x8x32x32
        return torch.matmul(y[:, :, :, :16], self.proj)  # 1x8x32x5


def mixed():
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.SiLU(), nn.MaxPool2d(3, 2, 1, ceil_mode=True),
        ShuffleUnitS1(16), Ghost(16, 32), nn.Conv2d(32, 64, 1, groups=4), nn.Hardswish(),
        nn.Upsample(scale_factor=2), nn.AvgPool2d(3, 2, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(64, 10),
    )


# ------------------------------------------------------------------------------------ hand counts
@pytest.mark.parametrize("meta", [True, False])
def test_pointwise_conv_hand_count(meta):
    r = count_model(nn.Conv2d(128, 128, 1, bias=False), (1, 128, 56, 56), meta=meta)
    conv = rows(r, "convolution").iloc[0]
    assert conv["madds"] == 56 * 56 * 128 * 128
    assert conv["flops"] == 2 * 56 * 56 * 128 * 128
    assert conv["mac_bytes"] == 4 * (56 * 56 * 128 + 56 * 56 * 128 + 128 * 128)
    assert conv["category"] == "pointwise"
    assert conv["params"] == 128 * 128
    assert conv["act_elems"] == 56 * 56 * 128
    assert conv["in_shapes"] == "1x128x56x56; 128x128x1x1"
    assert conv["out_shape"] == "1x128x56x56"


def test_fp16_halves_mac_bytes():
    m = nn.Sequential(nn.Conv2d(128, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU())
    r32 = count_model(m, (1, 128, 56, 56))
    r16 = count_model(m, (1, 128, 56, 56), dtype=torch.float16)
    assert r16.totals["mac_bytes"] * 2 == r32.totals["mac_bytes"]
    assert r16.totals["madds"] == r32.totals["madds"]
    assert r16.dtype == "float16"


def test_conv_categories_from_geometry():
    m = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32, bias=False),  # depthwise
                      nn.Conv2d(32, 64, 1, groups=4, bias=False),  # group 1x1
                      nn.Conv2d(64, 64, 3, padding=1, bias=False),  # dense 3x3
                      nn.Conv2d(64, 16, 1, bias=False))  # pointwise
    r = count_model(m, (1, 32, 14, 14))
    conv = rows(r, "convolution")
    assert list(conv["category"]) == ["depthwise", "group_conv", "conv", "pointwise"]
    assert list(conv["madds"]) == [14 * 14 * 32 * 9, 14 * 14 * 64 * 8, 14 * 14 * 64 * 64 * 9, 14 * 14 * 16 * 64]
    assert conv_category(1, 1, 9) == "conv"
    assert op_category("cat") == "data_movement"
    assert op_category("mean", reduce_dims=[-1, -2], ndim=4) == "pooling"
    assert op_category("mean", reduce_dims=[1], ndim=4) == "other"


def test_shufflenet_v2_stride1_unit():
    c, h = 116, 28
    b = c // 2
    r = count_model(ShuffleUnitS1(c), (1, c, h, h))
    conv = rows(r, "convolution")
    assert list(conv["category"]) == ["pointwise", "depthwise", "pointwise"]
    assert r.totals["madds"] == 2 * h * h * b * b + h * h * b * 9
    assert r.totals["params"] == 2 * b * b + b * 9 + 3 * 2 * b
    act = h * h * c
    split = rows(r, "split")
    assert len(split) == 1 and split.iloc[0]["category"] == "data_movement"
    assert split.iloc[0]["madds"] == 0 and split.iloc[0]["mac_bytes"] == 0
    cat = rows(r, "cat").iloc[0]
    assert cat["category"] == "data_movement" and cat["madds"] == 0 and cat["flops"] == 0
    assert cat["mac_bytes"] == 4 * 2 * act  # two halves read, one tensor written
    # the shuffle: views are listed and free, the contiguous copy reads and writes everything once
    assert len(rows(r, "view")) == 2 and rows(r, "view")["mac_bytes"].sum() == 0
    assert rows(r, "transpose").iloc[0]["mac_bytes"] == 0
    clone = rows(r, "clone").iloc[0]
    assert clone["category"] == "data_movement" and clone["mac_bytes"] == 4 * 2 * act
    assert set(r.ops["category"]) <= set(CATEGORIES)


def test_ghost_module():
    c1, c2, h = 16, 32, 20
    r = count_model(Ghost(c1, c2), (1, c1, h, h))
    conv = rows(r, "convolution")
    assert list(conv["category"]) == ["pointwise", "depthwise"]
    assert list(conv["madds"]) == [h * h * c1 * (c2 // 2), h * h * (c2 // 2) * 9]
    cat = rows(r, "cat").iloc[0]
    assert cat["madds"] == 0 and cat["mac_bytes"] == 4 * 2 * h * h * c2


@pytest.mark.parametrize("meta", [True, False])
def test_functional_ops_are_counted(meta):
    r = count_model(Functional(), (1, 4, 16, 16), meta=meta)
    conv = rows(r, "convolution").iloc[0]
    assert conv["madds"] == 16 * 16 * 8 * 4 * 9 and conv["params"] == 8 * 4 * 9 and conv["category"] == "conv"
    up = rows(r, "upsample_nearest2d").iloc[0]
    assert up["category"] == "data_movement" and up["flops"] == 0
    assert up["mac_bytes"] == 4 * (8 * 16 * 16 + 8 * 32 * 32)
    mm = r.ops[r.ops["category"] == "linear"]
    assert mm["madds"].sum() == 8 * 32 * 5 * 16
    assert r.totals["params"] == 8 * 4 * 9 + 16 * 5
    assert r.yolo_gflops == 0  # thop's convention only sees registered module types


def test_elementwise_norm_pooling_formulas():
    m = nn.Sequential(nn.BatchNorm2d(8), nn.SiLU(), nn.MaxPool2d(2), nn.AvgPool2d(2), nn.AdaptiveAvgPool2d(1))
    r = count_model(m, (1, 8, 8, 8))
    n = 8 * 8 * 8
    assert rows(r, "native_batch_norm").iloc[0]["flops"] == 2 * n
    assert rows(r, "silu").iloc[0]["flops"] == 5 * n
    assert rows(r, "max_pool2d_with_indices").iloc[0]["flops"] == (n // 4) * 3
    assert rows(r, "avg_pool2d").iloc[0]["flops"] == (n // 16) * 4
    assert r.ops.iloc[-1]["category"] == "pooling" and r.ops.iloc[-1]["flops"] == n // 16
    bn = rows(r, "native_batch_norm").iloc[0]
    assert bn["mac_bytes"] == 4 * (2 * n + 4 * 8)  # input, output, weight, bias, running mean and var


def test_totals_are_row_sums_and_params_match():
    m = mixed()
    r = count_model(m, (1, 3, 64, 64))
    for col, total in r.totals.items():
        assert total == int(r.ops[col].sum())
    assert r.totals["params"] == sum(p.numel() for p in m.parameters())
    assert list(r.ops.columns) == list(COLUMNS)
    by_cat = r.by_category()
    assert by_cat["madds"].sum() == r.totals["madds"]
    assert r.by_op()["flops"].sum() == r.totals["flops"]
    assert r.by_module()["mac_bytes"].sum() == r.totals["mac_bytes"]
    layer = r.by_layer()
    assert layer["params"].sum() == r.totals["params"]
    for name, child in m.named_children():
        assert int(layer.loc[layer["name"] == name, "params"].sum()) == sum(p.numel() for p in child.parameters())


def test_unused_parameters_get_a_row():
    class WithSpare(nn.Module):
        def __init__(self):
            super().__init__()
            self.used = nn.Conv2d(3, 4, 1)
            self.spare = nn.Linear(7, 7)

        def forward(self, x):
            return self.used(x)

    r = count_model(WithSpare(), (1, 3, 8, 8))
    unused = rows(r, "(unused)")
    assert unused["params"].sum() == 7 * 7 + 7
    assert set(unused["module"]) == {"spare"}


def test_meta_and_real_mode_agree():
    m = mixed()
    meta = count_model(m, (1, 3, 64, 64), meta=True)
    real = count_model(m, (1, 3, 64, 64), meta=False)
    assert meta.meta and not real.meta
    assert meta.ops.equals(real.ops)
    assert meta.yolo_gflops == real.yolo_gflops


def test_model_is_not_mutated():
    m = mixed().train()
    m[1].eval()  # mixed training flags must come back exactly
    flags = [x.training for x in m.modules()]
    params = {n: p for n, p in m.named_parameters()}
    state = copy.deepcopy(m.state_dict())
    n_global = (len(nn_module._global_forward_hooks), len(nn_module._global_forward_pre_hooks))
    for meta in (True, False):
        count_model(m, (1, 3, 64, 64), meta=meta)
        count_model(m, (1, 3, 64, 64), meta=meta, dtype=torch.float16)
    assert [x.training for x in m.modules()] == flags
    assert all(p is params[n] and p.device.type == "cpu" and p.dtype == torch.float32
               for n, p in m.named_parameters())
    after = m.state_dict()
    assert list(after) == list(state)
    assert all(torch.equal(after[k], state[k]) for k in state)
    assert all(not x._forward_hooks and not x._forward_pre_hooks for x in m.modules())
    assert (len(nn_module._global_forward_hooks), len(nn_module._global_forward_pre_hooks)) == n_global
    assert not any(hasattr(x, "total_ops") for x in m.modules())


def test_input_shape_or_imgsz_required():
    with pytest.raises(ConfigError, match="imgsz"):
        count_model(nn.Conv2d(3, 3, 1))
    r = count_model(nn.Conv2d(5, 3, 1), imgsz=8)
    assert r.input_shape == (1, 5, 8, 8)


# ---------------------------------------------------------------------------- zoo models (builder)
def test_shufflenet_v2_x1_0_madds_match_paper():
    r = count("shufflenet_v2_x1_0", 224)
    assert r.totals["madds"] == pytest.approx(146e6, rel=0.01)  # ShuffleNetV2 paper, Table 5


def test_zoo_layer_params_equal_layer_parameters():
    from latlab.ops.builder import build_model

    m = build_model("yolov5n")
    r = count_model(m, imgsz=320)
    layer = r.by_layer().set_index("layer")
    for i, block in enumerate(m.layers):
        assert layer.loc[i, "params"] == sum(p.numel() for p in block.parameters())
    assert r.totals["params"] == sum(p.numel() for p in m.parameters())
    assert list(layer["type"])[-1] == "Detect"
    cats = set(r.ops["category"])
    assert {"conv", "pointwise", "elementwise", "norm", "pooling", "data_movement"} <= cats


def test_count_errors():
    with pytest.raises(UnknownModelError):
        count("no_such_model_xyz", 640)
    with pytest.raises(ConfigError, match=r"imgsz 100 .*stride 32"):
        count("yolov5n", 100)


def test_cli_count(capsys, tmp_path):
    assert cli_main(["count", "no_such_model_xyz"]) == 2
    assert cli_main(["count", "yolov5n", "--imgsz", "100"]) == 2
    err = capsys.readouterr().err
    assert "no_such_model_xyz" in err and "imgsz 100" in err and "32" in err
    assert cli_main(["count", "shufflenet_v2_x0_5", "--imgsz", "224", "--by", "category", "--out",
                     str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "multiply-adds" in out and "GFLOPs in YOLOv5's convention" in out
    assert (tmp_path / "ops.csv").is_file() and (tmp_path / "by_category.csv").is_file()
    assert (tmp_path / "meta.json").is_file()
