"""latlab's counts against fvcore and MIT thop 0.1.1 themselves, and the cross-check table."""

import copy

import pytest
import thop
import torch
import torch.nn.functional as F
from torch import nn

from latlab.ops.builder import build_model
from latlab.ops.zoo import list_zoo
from latlab.profiling.counter import count_model
from latlab.profiling.crosscheck import (
    CONV_CATEGORIES,
    CROSSCHECK_COLUMNS,
    crosscheck,
    fvcore_count,
    thop_count,
)


def thop_total(model, shape):
    ops, _ = thop.profile(copy.deepcopy(model), inputs=(torch.randn(shape),), verbose=False)
    return float(ops)


class ThopZoo(nn.Module):
    """One of each module type thop has a rule for (and some it has none for)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)  # bias: thop ignores it
        self.bn = nn.BatchNorm2d(8)
        self.prelu = nn.PReLU()
        self.act = nn.LeakyReLU(0.1)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.pool = nn.AvgPool2d(2)
        self.adapt = nn.AdaptiveAvgPool2d((3, 3))
        self.deconv = nn.ConvTranspose2d(8, 4, 2, stride=2)
        self.ln = nn.LayerNorm(6)
        self.fc = nn.Linear(4 * 6 * 6, 10)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x):
        y = self.pool(self.up(self.act(self.prelu(self.bn(self.conv(x))))))  # 8x12x12
        y = self.ln(self.deconv(self.adapt(y)))  # 4x6x6
        return self.softmax(self.fc(y.flatten(1)))


class FunctionalConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(16, 3, 3, 3))
        self.bn = nn.BatchNorm2d(16)

    def forward(self, x):
        return self.bn(F.conv2d(x, self.weight, padding=1))


@pytest.mark.filterwarnings("ignore:This API is being deprecated")  # thop's own PReLU rule
def test_thop_convention_matches_thop_on_every_rule():
    m = ThopZoo()
    r = count_model(m, (1, 3, 12, 12))
    assert r.yolo_gflops * 1e9 / 2 == pytest.approx(thop_total(m, (1, 3, 12, 12)), abs=0.5)
    assert count_model(m, (1, 3, 12, 12), meta=False).ops.equals(r.ops)


def test_yolov5s_yolo_gflops_equal_2x_thop():
    m = build_model("yolov5s")
    r = count_model(m, imgsz=640)
    assert r.yolo_gflops * 1e9 == pytest.approx(2 * thop_total(m, (1, 3, 640, 640)), abs=1)
    assert round(r.yolo_gflops, 1) == 16.6  # YOLOv5 v6 README / build log for yolov5s


def test_yolo_convention_follows_model_info_probe_for_se_detectors():
    m = build_model("yolov5s-mobilenetv3-small")
    r = count_model(m, imgsz=640)
    s = max(int(m.stride.max()), 32)
    printed = 2 * thop_total(m, (1, 3, s, s)) * (640 / s) ** 2  # YOLOv5 utils/torch_utils.py model_info
    direct = 2 * thop_total(m, (1, 3, 640, 640))
    assert r.yolo_probe == s
    assert r.yolo_gflops * 1e9 == pytest.approx(printed, rel=1e-12)
    assert 2 * sum(r.thop_by_type.values()) == pytest.approx(direct, abs=1)
    assert printed > direct  # SE blocks run on 1x1 maps: the area scaling overstates them


def test_fvcore_and_thop_conventions_stated_in_the_reasons_hold():
    m = build_model("yolov5n")
    r = count_model(m, imgsz=320)
    total, by_op, _ = fvcore_count(m, (1, 3, 320, 320))
    conv = r.ops.loc[r.ops["category"].isin(CONV_CATEGORIES), "madds"].sum()
    bn_elems = r.ops.loc[r.ops["op"] == "native_batch_norm", "act_elems"].sum()
    up_elems = r.ops.loc[r.ops["op"] == "upsample_nearest2d", "act_elems"].sum()
    assert by_op["conv"] == conv
    assert by_op["batch_norm"] == 2 * bn_elems  # affine BN in eval: 2 per element
    assert total == conv + 2 * bn_elems + up_elems
    thop_ops, _ = thop_count(m, (1, 3, 320, 320))
    assert thop_ops == conv + 4 * bn_elems + up_elems  # thop: 2·numel, doubled for affine


def test_functional_conv_seen_by_latlab_and_fvcore_not_thop():
    m = FunctionalConv()
    shape = (1, 3, 16, 16)
    madds = 16 * 16 * 16 * 3 * 9
    r = count_model(m, shape)
    assert r.totals["madds"] == madds
    _, by_op, _ = fvcore_count(m, shape)
    assert by_op["conv"] == madds  # the jit trace records aten::_convolution
    assert thop_count(m, shape)[0] == 4 * 16 * 16 * 16  # only the BatchNorm2d module
    df = crosscheck(m, 16, result=r)
    thop_reason = df.set_index("counter").loc["thop", "reason"]
    assert "outside Conv/Linear modules" in thop_reason and "0.1106 M" in thop_reason


def test_crosscheck_table_and_no_thop_buffers_left():
    m = build_model("shufflenet_v2_x0_5")
    keys = list(m.state_dict())
    df = crosscheck(m, 224)
    assert list(df.columns) == list(CROSSCHECK_COLUMNS)
    t = df.set_index("counter")
    assert {"latlab", "fvcore", "thop", "YOLOv5 GFLOPs"} <= set(t.index)
    assert t.loc["latlab", "ratio_to_latlab_madds"] == 1.0
    assert t.loc["YOLOv5 GFLOPs", "total"] == 2 * t.loc["thop", "total"]
    assert t.loc["latlab YOLOv5 convention", "total"] == pytest.approx(t.loc["YOLOv5 GFLOPs", "total"], abs=1)
    assert all(isinstance(s, str) and s for s in df["reason"])
    assert list(m.state_dict()) == keys
    assert not any("total_ops" in x._buffers or "total_params" in x._buffers for x in m.modules())


ZOO = [e.name for e in list_zoo()]


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_conv_madds_equal_fvcore_for_every_zoo_model(name):
    m = build_model(name)
    size = 256 if m.is_detector else 224
    r = count_model(m, imgsz=size)
    _, by_op, _ = fvcore_count(m, (1, 3, size, size))
    conv = r.ops.loc[r.ops["category"].isin(CONV_CATEGORIES), "madds"].sum()
    assert conv == by_op["conv"]
    assert r.totals["params"] == sum(p.numel() for p in m.parameters())
