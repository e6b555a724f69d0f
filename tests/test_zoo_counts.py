"""Zoo models against published numbers (torchvision, the ShuffleNetV2 paper, YOLOv5's README and logs)."""

import pytest
import torch

from latlab.ops.builder import build_model
from latlab.ops.zoo import list_zoo
from latlab.profiling.summary import summarize


def n_params(model):
    return sum(p.numel() for p in model.parameters())


# torchvision's published parameter counts (weights metadata / docs)
TORCHVISION_PARAMS = {
    "shufflenet_v2_x0_5": 1_366_792,
    "shufflenet_v2_x1_0": 2_278_604,
    "shufflenet_v2_x1_5": 3_503_624,
    "shufflenet_v2_x2_0": 7_393_996,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_large": 5_483_032,
    "mobilenet_v3_small": 2_542_856,
}


@pytest.mark.parametrize(("name", "expected"), TORCHVISION_PARAMS.items())
def test_classification_params_match_torchvision(name, expected):
    assert n_params(build_model(name)) == expected


# ShuffleNetV2 paper Table 5: multiply-adds at 224x224 (41/146/299/591 M); MobileNetV2 300 M (Table 8),
# MobileNetV3 219/56 M (paper Table 3), GhostNet 141 M (paper)
PAPER_MADDS = {
    "shufflenet_v2_x0_5": 41e6,
    "shufflenet_v2_x1_0": 146e6,
    "shufflenet_v2_x1_5": 299e6,
    "shufflenet_v2_x2_0": 591e6,
    "mobilenet_v2": 300e6,
    "mobilenet_v3_large": 219e6,
    "mobilenet_v3_small": 56e6,
    "ghostnet_100": 141e6,
}


@pytest.mark.parametrize(("name", "expected"), PAPER_MADDS.items())
def test_classification_madds_match_papers(name, expected):
    madds = summarize(build_model(name), 224).madds
    assert madds == pytest.approx(expected, rel=0.015)


def test_ghostnet_params_match_paper():
    assert round(n_params(build_model("ghostnet_100")) / 1e6, 1) == 5.2


# YOLOv5 README (v7.0, 640, nc 80): params (M) and GFLOPs. The README's GFLOPs are of the BN-fused model;
# unfused BN, as built and printed at training time, adds 0.5-1.5 %.
YOLO_PUBLISHED = {"yolov5n": (1.9, 4.5), "yolov5s": (7.2, 16.5), "yolov5m": (21.2, 49.0)}


@pytest.mark.parametrize(("name", "published"), YOLO_PUBLISHED.items())
def test_yolov5_params_and_gflops(name, published):
    params_m, gflops = published
    s = summarize(build_model(name), 640)
    assert round(s.params / 1e6, 1) == params_m
    assert gflops <= s.yolo_gflops <= gflops * 1.015


def test_yolov5s_exact_param_count():
    # YOLOv5 v7.0 prints "YOLOv5s summary: 214 layers, 7235389 parameters" for the unfused model
    assert n_params(build_model("yolov5s")) == 7_235_389


def test_seed_002_ghost_backbone_matches_its_log_line():
    # seed 002: "YOLOv5s-ghost-backbone summary: 321 layers, 5301141 parameters, ..., 11.4 GFLOPs"
    s = summarize(build_model("yolov5s-ghost-backbone"), 640)
    assert s.params == 5_301_141
    assert round(s.yolo_gflops, 1) == 11.4


def test_width_depth_overrides_turn_yolov5s_into_yolov5n():
    # YOLOv5n is YOLOv5s with width 0.25: README 1.9M params, v7.0 log 1,872,157
    assert n_params(build_model("yolov5s", width_multiple=0.25)) == 1_872_157


def test_nc_override_resizes_detect_head():
    m = build_model("yolov5n", nc=10)
    assert m.nc == 10 and m.detect.no == 15
    assert all(conv.out_channels == 3 * 15 for conv in m.detect.m)


def test_detect_bias_init_follows_yolov5_prior():
    import math

    m = build_model("yolov5n", nc=10)
    det = m.detect
    for conv, s in zip(det.m, det.stride, strict=True):
        b = conv.bias.view(det.na, -1)
        # PyTorch's default bias init is uniform within 1/sqrt(fan_in); the prior is added on top
        bound = 1 / math.sqrt(conv.in_channels)
        prior = math.log(8 / (640 / float(s)) ** 2)
        assert ((b[:, 4] - prior).abs() <= bound + 1e-6).all()
        assert ((b[:, 5:] - math.log(0.6 / (10 - 0.99999))).abs() <= bound + 1e-6).all()
    assert det.stride.tolist() == [8.0, 16.0, 32.0]
    # anchors in grid units: P3's first anchor 10x13 px / 8
    assert det.anchors[0, 0].tolist() == pytest.approx([10 / 8, 13 / 8])


DETECTORS = [e.name for e in list_zoo("detect")]
CLASSIFIERS = [e.name for e in list_zoo("classify")]


@pytest.mark.parametrize("name", DETECTORS)
def test_detectors_forward_shapes(name):
    m = build_model(name)
    stride = m.max_stride
    sizes = [s for s in (320, 640) if s % stride == 0] or [stride * 3, stride * 5]
    for imgsz in sizes:
        x = torch.zeros(1, 3, imgsz, imgsz)
        with torch.no_grad():
            m.train()
            maps = m(x)
            m.eval()
            pred = m(x)
        assert len(maps) == 3
        cells = 0
        for p, s in zip(maps, m.detect.stride, strict=True):
            g = imgsz // int(s)
            assert p.shape == (1, 3, g, g, m.nc + 5)
            cells += g * g
        assert pred.shape == (1, 3 * cells, m.nc + 5)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_forward_shapes(name):
    m = build_model(name).eval()
    with torch.no_grad():
        assert m(torch.zeros(2, 3, 224, 224)).shape == (2, 1000)


def test_zoo_has_the_issue_entries():
    names = {e.name for e in list_zoo()}
    wanted = {"yolov5n", "yolov5s", "yolov5m", "yolov5s-ghost", "yolov5s-ghost-backbone", "yolov5s-shufflenetv2",
              "yolov5-shufflenetv2-crm", "yolov5-shufflenetv2-stem", "yolov5s-mobilenetv3-small", "yolov5s-pplcnet",
              "yolov5s-efficientformer-l1", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5",
              "shufflenet_v2_x2_0", "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small", "ghostnet_100"}
    assert wanted <= names
