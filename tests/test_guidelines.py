"""G1-G4 networks against the paper's Tables 1-4 (channels, FLOPs tolerance, MAC), the verdict logic on
synthetic measurements, and ``run_guidelines`` / ``latlab guidelines`` end to end on tiny budgets.

Reference numbers are typed in from ShuffleNet V2 (Ma et al., ECCV 2018, arXiv:1807.11164), Tables 1-4, or
computed by hand in the test; no timing is asserted.
"""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch
from torch import nn

from latlab.cli import main
from latlab.errors import ConfigError, DeviceError, LatlabError
from latlab.guidelines.experiments import (
    Bottleneck,
    ParallelBlock,
    configurations,
    g2_buildable_channels,
    g3_network,
    series_width,
)
from latlab.guidelines.lint import trace_fragments
from latlab.guidelines.paper import TABLES, paper_tolerance
from latlab.guidelines.run import parse_guidelines, parse_widths, resolve_threads, run_guidelines
from latlab.guidelines.verdict import DOES_NOT_HOLD, HOLDS, PARTLY, decide, normalise, verdict_table
from latlab.profiling.backends import cuda_available
from latlab.profiling.counter import count_model

HW = 56 * 56
# Table 1 / Table 2 / Table 3 / Table 4 channel counts for ×1, as printed.
G1_PAIRS = {"gpu": [(128, 128), (90, 180), (52, 312), (36, 432)], "arm": [(32, 32), (22, 44), (13, 78), (9, 108)]}
G2_C = {"gpu": [128, 180, 256, 360], "arm": [64, 90, 128, 180]}
G2_G = [1, 2, 4, 8]
G3_C = {"gpu": 128, "arm": 64}
G4_C = 32


def totals(cfg, imgsz: int = 56) -> dict[str, int]:
    return count_model(cfg.build(), input_shape=(1, cfg.in_channels, imgsz, imgsz)).totals


# ------------------------------------------------------------------------------------ paper data
def test_published_numbers_spot_checks():
    assert TABLES["G1"].row("1:12").value("arm", 1) == 57.6
    assert TABLES["G1"].row("1:1").value("gpu", 4) == 232
    assert TABLES["G2"].row("g=8").value("arm", 1) == 27.8
    assert TABLES["G3"].row("4-fragment-parallel").value("gpu", 1) == 691
    assert TABLES["G4"].row("neither").value("gpu", 4) == 1782
    assert TABLES["G4"].row("ReLU+shortcut").value("arm", 2) == 16.9


@pytest.mark.parametrize("platform", ["gpu", "arm"])
def test_channel_pairs_match_the_paper(platform):
    for w in (1, 2, 4):
        g1 = configurations("G1", w, platform)
        assert [(c.spec["c1"], c.spec["c2"]) for c in g1] == [(a * w, b * w) for a, b in G1_PAIRS[platform]]
        assert [c.row for c in g1] == ["1:1", "1:2", "1:6", "1:12"]
        g2 = configurations("G2", w, platform)
        assert [(c.printed["c"], c.printed["g"]) for c in g2] == [(c * w, g) for c, g in
                                                                  zip(G2_C[platform], G2_G, strict=True)]
        assert all(c.spec["c"] % c.spec["g"] == 0 for c in g2)
        assert all(c.printed["c"] == G3_C[platform] * w for c in configurations("G3", w, platform))
        assert all(c.spec["c"] == G4_C * w for c in configurations("G4", w, platform))


def test_paper_tolerance_is_computed_from_its_own_channel_pairs():
    assert paper_tolerance("G1", "arm") == pytest.approx(1 - 22 * 44 / (32 * 32))  # 5.47 %
    assert paper_tolerance("G1", "gpu") == pytest.approx(1 - 36 * 432 / (128 * 128))  # 5.08 %
    assert paper_tolerance("G2", "gpu") == pytest.approx(1 - 180 ** 2 / 2 / 128 ** 2)  # 1.12 %
    assert paper_tolerance("G2", "arm") == pytest.approx(1 - 90 ** 2 / 2 / 64 ** 2)
    assert paper_tolerance("G3", "arm") == 0.0


# ------------------------------------------------------------------------------------------ G1
@pytest.mark.parametrize("platform", ["gpu", "arm"])
@pytest.mark.parametrize("width", [1, 2, 4])
def test_g1_rows_have_equal_flops_within_the_papers_tolerance(platform, width):
    rows = [totals(c) for c in configurations("G1", width, platform)]
    tol = paper_tolerance("G1", platform)
    for (c1, c2), t in zip(G1_PAIRS[platform], rows, strict=True):
        # 10 blocks × 2 convs × h·w·c1·c2, no bias and no element-wise work
        assert t["madds"] == 10 * 2 * HW * c1 * c2 * width ** 2
        assert t["flops"] == 2 * t["madds"]
        assert abs(t["madds"] / rows[0]["madds"] - 1) <= tol + 1e-12


@pytest.mark.parametrize("platform", ["gpu", "arm"])
@pytest.mark.parametrize("width", [1, 2, 4])
def test_g1_mac_is_smallest_at_equal_widths(platform, width):
    macs = [totals(c)["mac_bytes"] for c in configurations("G1", width, platform)]
    assert macs[0] == min(macs)
    assert macs == sorted(macs)  # and it grows with c2/c1 (the paper's MAC argument)


def test_g1_mac_hand_computation_arm_x1():
    # each 1×1 conv reads its input h·w·c1 and weights c1·c2 and writes h·w·c2 (float32): 20 convs
    per_conv = HW * (32 + 32) + 32 * 32
    assert totals(configurations("G1", 1, "arm")[0])["mac_bytes"] == 20 * 4 * per_conv == 16_138_240


# ------------------------------------------------------------------------------------------ G2
@pytest.mark.parametrize("platform", ["gpu", "arm"])
@pytest.mark.parametrize("width", [1, 2, 4])
def test_g2_rows_have_equal_flops(platform, width):
    cfgs = configurations("G2", width, platform)
    rows = [totals(c) for c in cfgs]
    for c, t in zip(cfgs, rows, strict=True):
        assert t["madds"] == 10 * HW * c.spec["c"] ** 2 // c.spec["g"]
        rel = abs(t["madds"] / rows[0]["madds"] - 1)
        if c.exact:
            assert rel <= paper_tolerance("G2", platform) + 1e-12
        else:  # substituted: within the paper's largest tolerance (G1's), and the note states it
            assert rel <= max(paper_tolerance("G1", p) for p in ("arm", "gpu"))
            assert f"{rel:+.1%}".lstrip("+") in c.note


def test_g2_arm_g8_is_not_buildable_as_printed():
    cfgs = {(c.platform, c.width, c.row): c for p in ("arm", "gpu") for w in (1, 2, 4)
            for c in configurations("G2", w, p)}
    inexact = [k for k, c in cfgs.items() if not c.exact]
    assert inexact == [("arm", 1, "g=8")]  # 180 / 8 = 22.5; every other printed c divides by its g
    sub = cfgs[("arm", 1, "g=8")]
    assert sub.spec == {"c": 184, "g": 8} and sub.printed == {"c": 180, "g": 8}
    assert "180" in sub.note and "184" in sub.note
    # 184²/8 = 4232 is closer to 64² = 4096 than 176²/8 = 3872
    assert g2_buildable_channels(180, 8, 64 ** 2) == 184
    assert g2_buildable_channels(90, 2, 64 ** 2) == 90


# ------------------------------------------------------------------------------------------ G3
@pytest.mark.parametrize("platform", ["gpu", "arm"])
def test_g3_structures_and_flops(platform):
    cfgs = configurations("G3", 1, platform)
    c = G3_C[platform]
    base = totals(cfgs[0])["madds"]
    assert base == 10 * HW * c * c
    expected = {"1-fragment": (1, 1, 1), "2-fragment-series": (2, 2, 1), "4-fragment-series": (4, 4, 1),
                "2-fragment-parallel": (2, 1, 2), "4-fragment-parallel": (4, 1, 4)}
    for cfg in cfgs:
        model = cfg.build()
        frags, depth, width = expected[cfg.row]
        assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 10 * frags
        one_block = nn.Sequential(model[0])
        stats = trace_fragments(one_block, torch.randn(1, cfg.in_channels, 8, 8))["0"]
        assert (stats["fragments"], stats["series_depth"], stats["parallel_width"]) == (frags, depth, width)
        madds = totals(cfg)["madds"]
        if cfg.row == "2-fragment-series":  # c/√2 is not an integer: nearest integer width, stated
            w = round(c / math.sqrt(2))
            assert cfg.spec["width"] == w and madds == 10 * HW * 2 * w * w
            assert abs(madds / base - 1) < 0.012 and "FLOPs" in cfg.note
        else:
            assert madds == base


def test_g3_widths_and_branches():
    assert series_width(64, 4) == 32 and series_width(64, 2) == 45 and series_width(128, 2) == 91
    block = ParallelBlock(64, 4)
    assert [b.out_channels for b in block.branches] == [16, 16, 16, 16]
    assert block(torch.randn(1, 64, 4, 4)).shape == (1, 64, 4, 4)
    summed = g3_network(64, 4, parallel=True, blocks=1, merge="sum")
    assert [b.out_channels for b in summed[0].branches] == [32] * 4  # c/√4 each, added
    with pytest.raises(ConfigError):
        ParallelBlock(64, 2, merge="max")


# ------------------------------------------------------------------------------------------ G4
def test_g4_rows_differ_only_by_their_element_wise_work():
    cfgs = {c.row: c for c in configurations("G4", 1, "arm")}
    t = {row: totals(c) for row, c in cfgs.items()}
    c, mid = 32, 8
    conv = HW * (c * mid + 9 * mid * mid + mid * c) * 10
    assert {v["madds"] for v in t.values()} == {conv}
    relu = 10 * HW * (2 * mid + c)  # ReLU after conv1, conv2 (c/4 channels) and after the add (c channels)
    add = 10 * HW * c
    assert t["neither"]["flops"] == 2 * conv
    assert t["ReLU only"]["flops"] == 2 * conv + relu
    assert t["shortcut only"]["flops"] == 2 * conv + add
    assert t["ReLU+shortcut"]["flops"] == 2 * conv + relu + add
    with pytest.raises(ConfigError):
        Bottleneck(30)


def test_bad_guideline_and_width():
    with pytest.raises(ConfigError, match="unknown guideline 'G5'"):
        configurations("G5")
    with pytest.raises(ConfigError, match="width multiplier 3"):
        configurations("G1", 3)
    with pytest.raises(ConfigError, match="channel set"):
        configurations("G1", 1, "tpu")
    assert parse_guidelines("g3, G1") == ("G1", "G3")
    assert parse_guidelines(None) == ("G1", "G2", "G3", "G4")
    assert parse_widths("x4,1") == (1, 4) and parse_widths(None, quick=True) == (1,)
    with pytest.raises(ConfigError):
        parse_widths("1,8")
    with pytest.raises(ConfigError):
        parse_widths("two")
    assert resolve_threads("all") >= 1 and resolve_threads("2") == 2
    with pytest.raises(DeviceError):
        resolve_threads("many")


# ------------------------------------------------------------------------------------- verdicts
def synthetic(guideline: str, rels: list[float], half_ci: float) -> pd.DataFrame:
    rows = TABLES[guideline].rows
    return pd.DataFrame({
        "row": [r.label for r in rows], "key": [r.key for r in rows], "is_baseline": [i == 0 for i in range(len(rows))],
        "rel_latency": rels, "rel_ci_low": [1.0] + [r - half_ci for r in rels[1:]],
        "rel_ci_high": [1.0] + [r + half_ci for r in rels[1:]],
    })


def test_verdict_clear_slowdown_holds():
    v = decide("G1", synthetic("G1", [1.0, 1.10, 1.25, 1.50], 0.03))
    assert v.verdict == HOLDS and v.n_support == 3 and v.trend_rho == pytest.approx(1.0)
    assert "all 3 rows are slower" in v.reason


def test_verdict_flat_within_ci_does_not_hold():
    v = decide("G2", synthetic("G2", [1.0, 1.01, 0.99, 1.015], 0.05))
    assert v.verdict == DOES_NOT_HOLD and v.n_support == 0


def test_verdict_small_but_significant_is_not_enough():
    # CIs exclude 1 but the effect is below the 2 % minimum effect
    v = decide("G1", synthetic("G1", [1.0, 1.01, 1.012, 1.015], 0.002))
    assert v.verdict == DOES_NOT_HOLD


def test_verdict_partly_and_contradicting_rows():
    v = decide("G3", synthetic("G3", [1.0, 1.00, 1.30, 0.90, 1.01], 0.02))
    assert v.verdict == PARTLY and v.n_support == 1 and v.n_contradict == 1


def test_verdict_g4_expects_speedups():
    assert decide("G4", synthetic("G4", [1.0, 0.90, 0.95, 0.80], 0.02)).verdict == HOLDS
    slower = decide("G4", synthetic("G4", [1.0, 1.10, 1.05, 1.20], 0.02))
    assert slower.verdict == DOES_NOT_HOLD and slower.n_contradict == 3


def test_paper_numbers_through_the_same_rule():
    paper = TABLES["G2"]
    df = synthetic("G2", [1.0] * 4, 0.0)
    df["paper_rel_latency"] = [paper.baseline.value("arm", 1) / r.value("arm", 1) for r in paper.rows]
    v = decide("G2", df)
    assert v.paper_verdict == HOLDS and v.paper_trend_rho == pytest.approx(1.0)  # 40.0 > 35.0 > 32.9 > 27.8


def test_normalise_per_width():
    df = pd.DataFrame({"guideline": ["G1"] * 4, "width": [1, 1, 2, 2], "is_baseline": [True, False, True, False],
                       "estimate_ms": [2.0, 3.0, 10.0, 11.0], "paper_throughput": [80.0, 40.0, 20.0, 10.0],
                       "madds": [100, 95, 400, 400], "mac_bytes": [10, 20, 40, 40]})
    out = normalise(df)
    assert out["rel_latency"].tolist() == pytest.approx([1.0, 1.5, 1.0, 1.1])
    assert out["paper_rel_latency"].tolist() == pytest.approx([1.0, 2.0, 1.0, 2.0])
    assert out["mac_rel"].tolist() == pytest.approx([1.0, 2.0, 1.0, 1.0])
    assert out["rel_latency_per_madd"].iloc[1] == pytest.approx(1.5 / 0.95)


# ------------------------------------------------------------------------------------ end to end
def test_run_guidelines_tiny(tmp_path):
    res = run_guidelines("G4,G1", quick=True, imgsz=16, blocks=2, budget_s=0.3, progress=False)
    assert list(res.tables) == ["G1", "G4"]
    g1 = res.tables["G1"]
    assert len(g1) == 4 and g1["is_baseline"].sum() == 1
    assert g1.loc[g1["is_baseline"], "rel_latency"].item() == 1.0
    assert (g1["unit"] == "images/s").all() and (g1["paper_column"] == "ARM ×1").all()
    assert g1["paper_throughput"].tolist() == [76.2, 72.9, 69.1, 57.6]
    assert g1["throughput"].tolist() == pytest.approx((1000.0 / g1["estimate_ms"]).tolist())
    assert set(res.verdicts["verdict"]) <= {HOLDS, PARTLY, DOES_NOT_HOLD}
    path = res.save(tmp_path / "run")
    assert {p.name for p in path.iterdir()} >= {"G1.csv", "G4.csv", "verdicts.csv", "meta.json"}
    meta = json.loads((path / "meta.json").read_text())
    assert "1807.11164" in meta["citation"] and meta["settings"]["threads"] == 1
    assert verdict_table(res.combined()).shape[0] == 2


def test_run_guidelines_onnxruntime_and_widths():
    res = run_guidelines("G2", widths="1,2", imgsz=8, blocks=1, budget_s=0.3, backend="onnxruntime",
                         progress=False)
    df = res.tables["G2"]
    assert (df["backend"] == "onnxruntime").all() and sorted(df["width"].unique()) == [1, 2]
    assert res.substitutions and "g=8 ×1" in res.substitutions[0]
    assert set(res.verdicts["width"].astype(str)) == {"1", "2", "all"}


@pytest.mark.skipif(cuda_available(), reason="checks the error raised without a GPU")
def test_cuda_without_gpu_is_a_device_error():
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        run_guidelines("G1", quick=True, device="cuda", progress=False)


def test_cli_errors_are_one_line(capsys):
    for argv in (["guidelines", "--only", "G5"], ["guidelines", "--width", "3"], ["guidelines", "--imgsz", "0"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error:") and "Traceback" not in err
    if not cuda_available():
        assert main(["guidelines", "--device", "cuda"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err


def test_cli_json(capsys, tmp_path):
    out = tmp_path / "g"
    assert main(["guidelines", "--quick", "--only", "G3", "--imgsz", "8", "--budget", "0.3", "--json",
                 "--out", str(out)]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["tables"]["G3"][0]["row"] == "1-fragment"
    assert payload["verdicts"][0]["guideline"] == "G3"
    assert (out / "G3.csv").exists()


def test_errors_are_latlab_errors():
    assert issubclass(ConfigError, LatlabError) and issubclass(DeviceError, LatlabError)
