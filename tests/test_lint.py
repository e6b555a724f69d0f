"""The guideline linter on a hand-built model (numbers computed by hand) and on YOLOv5n, and ``latlab lint``."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from latlab.cli import main
from latlab.errors import ConfigError
from latlab.guidelines.experiments import Bottleneck, ParallelBlock, SeriesBlock
from latlab.guidelines.lint import LintThresholds, lint_model, trace_fragments
from latlab.ops.builder import build_model

S = 16  # input size
HW = S * S


class Hand(nn.Module):
    """One layer per guideline: a 1:12 1×1 conv, a g=4 group conv, 4 parallel 1×1 convs, 3 in series,
    and a ResNet bottleneck with ReLU and shortcut."""

    def __init__(self):
        super().__init__()
        self.wide = nn.Conv2d(8, 96, 1, bias=False)
        self.group = nn.Conv2d(96, 96, 1, groups=4, bias=False)
        self.branches = ParallelBlock(96, 4)
        self.series = SeriesBlock(96, 3)
        self.unit = Bottleneck(96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unit(self.series(self.branches(self.group(self.wide(x)))))


@pytest.fixture(scope="module")
def hand():
    return lint_model(Hand(), imgsz=S)


def row(res, name):
    return res.layers.set_index("module").loc[name]


def test_g1_ratio_and_mac_excess_by_hand(hand):
    r = row(hand, "wide")
    assert r["g1_max_ratio"] == 12.0 and r["g1_flag"]
    # equal widths at the same FLOPs: c = √(8·96); the weights cancel; float32
    expected = 4 * (HW * 8 + HW * 96 - 2 * HW * math.sqrt(8 * 96))
    assert r["g1_mac_excess_bytes"] == pytest.approx(expected)
    assert row(hand, "series")["g1_max_ratio"] == 1.0 and not row(hand, "series")["g1_flag"]
    assert row(hand, "series")["g1_mac_excess_bytes"] == pytest.approx(0.0)


def test_g2_group_count(hand):
    r = row(hand, "group")
    assert r["groups"] == "4" and r["g2_flag"]
    assert not row(hand, "wide")["g2_flag"] and row(hand, "wide")["groups"] == ""


def test_g3_fragments(hand):
    b, s = row(hand, "branches"), row(hand, "series")
    assert (b["fragments"], b["parallel_width"], b["series_depth"]) == (4, 4, 1) and b["g3_flag"]
    assert (s["fragments"], s["parallel_width"], s["series_depth"]) == (3, 1, 3) and not s["g3_flag"]
    u = row(hand, "unit")
    assert (u["fragments"], u["parallel_width"], u["series_depth"]) == (3, 1, 3)


def test_g4_element_wise_share_by_hand(hand):
    c, m = 96, 24
    conv1 = HW * c + c * m + HW * m
    conv2 = HW * m + 9 * m * m + HW * m
    conv3 = HW * m + m * c + HW * c
    relu = 2 * (2 * HW * m) + 2 * HW * c  # in-place ReLU reads and writes its tensor
    add = 3 * HW * c  # reads two, writes one
    r = row(hand, "unit")
    assert r["ew_mac_share"] == pytest.approx((relu + add) / (conv1 + conv2 + conv3 + relu + add))
    assert r["g4_flag"]  # ≈ 64 % ≥ 50 %
    ew_flops = (2 * HW * m + HW * c) + HW * c
    madds = HW * (c * m + 9 * m * m + m * c)
    assert r["ew_flops_share"] == pytest.approx(ew_flops / (2 * madds + ew_flops))
    assert row(hand, "wide")["ew_mac_share"] == 0.0


def test_findings_and_thresholds(hand):
    assert sorted(hand.findings["guideline"]) == ["G1", "G2", "G3", "G4"]
    assert "ratio 12.0" in hand.findings.set_index("guideline").loc["G1", "message"]
    strict = lint_model(Hand(), imgsz=S, thresholds=LintThresholds(g1_ratio=20, g4_mac_share=0.9))
    assert sorted(strict.findings["guideline"]) == ["G2", "G3"]


def test_yolov5n_structure():
    model = build_model("yolov5n")
    res = lint_model(model, imgsz=64)
    assert len(res.layers) == len(model.layers)
    types = res.layers.set_index("layer")["type"]
    c3 = res.layers[types.values == "C3"]
    assert (c3["parallel_width"] == 2).all()  # C3: cv1 ∥ cv2, then cv3 (YOLOv5's CSP block)
    conv = res.layers[types.values == "Conv"]
    assert (conv["fragments"] == 1).all()
    detect = res.layers.iloc[-1]
    assert detect["parallel_width"] == 3  # one 1×1 conv per level
    assert 0 < res.totals["ew_mac_share"] < 1


def test_measure_adds_latency_columns():
    res = lint_model(Hand(), imgsz=8, measure=True, budget_s=0.3)
    assert res.measured and res.layers["estimate_ms"].notna().all()
    assert res.layers["latency_share"].sum() == pytest.approx(1.0)


def test_trace_ignores_reused_ids():
    # many short-lived tensors: a freed tensor's id must not link unrelated ops
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(4, 4, 1)
            self.b = nn.Conv2d(4, 4, 1)

        def forward(self, x):
            return self.a(x.clone()) + self.b(x.clone())

    stats = trace_fragments(Two(), torch.randn(1, 4, 4, 4))
    assert stats["a"]["fragments"] == 1 and stats["b"]["fragments"] == 1


def test_bad_imgsz_for_a_detector():
    with pytest.raises(ConfigError, match="stride"):
        lint_model("yolov5n", imgsz=65)


def test_cli_lint(capsys, tmp_path):
    assert main(["lint", "yolov5n", "--imgsz", "64", "--json", "--out", str(tmp_path / "l")]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["meta"]["imgsz"] == 64 and len(payload["layers"]) > 10
    assert (tmp_path / "l" / "layers.csv").exists()
    assert main(["lint", "yolov5n", "--imgsz", "65"]) == 2
    assert main(["lint", "no_such_model_xyz"]) == 2
    assert "error:" in capsys.readouterr().err
