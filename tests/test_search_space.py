"""Search space: loading, validation with reasons, and sampled points that always build."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latlab.errors import ConfigError, SearchError
from latlab.ops.builder import build_model
from latlab.search.space import BLOCKS, STEM_STRIDE, arch_hash, block_width_problem, load_space, to_yaml

SPACE = load_space()


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _point(**over):
    """A fixed point of the default space, with overrides."""
    p = {name: values[0] for name, values in SPACE.choices.items()}
    p.update(over)
    return p


def test_default_space_loads_with_all_families():
    assert SPACE.nc == 10
    assert set(SPACE.choices["P3.block"]) == set(BLOCKS)
    assert set(SPACE.choices["stem.type"]) == {"Conv", "CBRM", "StemBlock"}
    # 3 stems * 3 widths * (6*3*3*2*4*2*3)(6*4*3*2*4*2*3)(6*3*3*2*4*2*3) * 2 sppf * 4 * 2 neck
    per3 = 6 * 3 * 3 * 2 * 4 * 2 * 3
    assert SPACE.size == 9 * per3 * (6 * 4 * 3 * 2 * 4 * 2 * 3) * per3 * 2 * 4 * 2


def test_many_random_points_decode_with_valid_structure():
    """Property over 2000 points: strides 8/16/32, per-block channel rules, valid 'from' indices."""
    rng = np.random.default_rng(0)
    for _ in range(2000):
        cand = SPACE.decode(SPACE.random_point(rng))
        assert cand.strides == (8, 16, 32)
        rows = cand.cfg["backbone"] + cand.cfg["head"]
        for i, (f, n, module, args) in enumerate(rows):
            for j in (f if isinstance(f, list) else [f]):
                assert j == -1 or 0 <= j < i
            assert n >= 1
            if module in ("Shuffle_Block", "GhostBottleneck", "MV2Block", "MobileNet_Block", "DepSepConv"):
                assert args[0] % SPACE.channel_divisor == 0
        assert rows[-1][2] == "Detect" and len(rows[-1][0]) == 3
        assert cand.arch_hash == arch_hash(cand.cfg)


def test_sampled_yaml_reproduces_seed_shufflenetv2_detector():
    """A point with seed 000's choices builds the zoo's yolov5s-shufflenetv2 exactly (same parameter count)."""
    space = load_space({
        "nc": 20,
        "stem": {"type": ["CBRM"], "width": [32]},
        "stages": [{"name": n, "block": ["shufflenetv2"], "depth": [d], "width": [w]}
                   for n, d, w in (("P3", 4, 128), ("P4", 8, 256), ("P5", 4, 512))],
        "sppf": [False],
        "neck": {"width": [128], "depth": [1]},
    })
    cand = space.decode({k: v[0] for k, v in space.choices.items()})
    ours, seed = build_model(cand.cfg), build_model("yolov5s-shufflenetv2")
    assert _params(ours) == _params(seed)
    assert [(li.module, li.n, li.from_) for li in ours.layer_info] == \
        [(li.module, li.n, li.from_) for li in seed.layer_info]
    assert ours.stride.tolist() == seed.stride.tolist() == [8.0, 16.0, 32.0]


def test_every_block_family_and_stem_builds_and_runs_at_64px():
    stems = list(STEM_STRIDE.keys() & set(SPACE.choices["stem.type"]))
    for i, block in enumerate(sorted(BLOCKS)):
        p = _point(**{"stem.type": stems[i % len(stems)], "P3.block": block, "P4.block": block,
                      "P5.block": block, "P3.depth": 2, "P4.kernel": 5, "P4.se": True, "P4.act": "hardswish",
                      "P5.expansion": 3, "sppf": i % 2 == 0})
        cand = SPACE.decode(p)
        model = build_model(cand.cfg).eval()
        assert model.stride.tolist() == [8.0, 16.0, 32.0]
        with torch.no_grad():
            out = model(torch.zeros(1, 3, 64, 64))
        # decoded predictions: 3 anchors * (8*8 + 4*4 + 2*2) cells, nc + 5 values each
        assert out.shape == (1, 3 * (64 + 16 + 4), SPACE.nc + 5)
        again = build_model(yaml.safe_load(to_yaml(cand.cfg)))
        assert _params(again) == _params(model)


@pytest.mark.slow
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**31 - 1))
def test_property_sampled_points_build(seed):
    cand = SPACE.decode(SPACE.random_point(np.random.default_rng(seed)))
    model = build_model(cand.cfg)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.nc == SPACE.nc


def test_ignored_options_share_an_architecture_hash():
    a = SPACE.decode(_point(**{"P3.block": "shufflenetv2", "P3.act": "relu", "P3.kernel": 3}))
    b = SPACE.decode(_point(**{"P3.block": "shufflenetv2", "P3.act": "silu", "P3.kernel": 5}))
    c = SPACE.decode(_point(**{"P3.block": "pplcnet", "P3.act": "silu"}))
    assert a.arch_hash == b.arch_hash != c.arch_hash
    assert a.arch == b.arch


def test_stride_two_stem_gets_a_p2_conv():
    cand = SPACE.decode(_point(**{"stem.type": "Conv"}))
    assert cand.cfg["backbone"][0] == [-1, 1, "Conv", [SPACE.choices["stem.width"][0], 6, 2, 2]]
    assert cand.cfg["backbone"][1][2:] == ["Conv", [SPACE.choices["stem.width"][0], 3, 2]]
    cbrm = SPACE.decode(_point(**{"stem.type": "CBRM"}))
    assert cbrm.cfg["backbone"][1][3][-1] == 2  # the first P3 block strides at once


def _space(**over):
    with open(SPACE.source) as fh:
        raw = yaml.safe_load(fh)
    raw.update(over)
    return raw


@pytest.mark.parametrize("edit, match", [
    ({"stem": {"type": ["Focus"], "width": [16]}}, "not a known stem"),
    ({"sppf": ["yes"]}, "true/false"),
    ({"neck": {"width": [30]}}, "not a multiple of channel_divisor 8"),
    ({"nc": 0}, "'nc' must be an integer >= 1"),
    ({"bogus": 1}, "unknown top-level key"),
    ({"stages": []}, "exactly three stages"),
])
def test_bad_spaces_are_rejected_with_a_reason(edit, match):
    with pytest.raises(ConfigError, match=match):
        load_space(_space(**edit))


def test_bad_stage_choices_are_rejected():
    raw = _space(channel_divisor=1)
    raw["stages"][0]["width"] = [25]
    raw["stages"][0]["block"] = ["shufflenetv2"]
    with pytest.raises(ConfigError, match="ShuffleNetV2 units need even channels"):
        load_space(raw)
    raw["stages"][0]["width"] = [30]
    raw["stages"][0]["block"] = ["ghost"]
    with pytest.raises(ConfigError, match="width % 4 == 0"):
        load_space(raw)
    raw = _space()
    raw["stages"][1]["kernel"] = [4]
    with pytest.raises(ConfigError, match="even"):
        load_space(raw)
    raw = _space()
    raw["stages"][2]["block"] = ["resnet"]
    with pytest.raises(ConfigError, match="not a known block family"):
        load_space(raw)
    raw = _space()
    raw["stages"][2]["act"] = ["swishy"]
    with pytest.raises(ConfigError, match="not an activation name"):
        load_space(raw)


def test_block_width_rules():
    assert block_width_problem("shufflenetv2", 24) is None
    assert "even" in block_width_problem("shufflenetv2", 25)
    assert block_width_problem("ghost", 24) is None
    assert "% 4" in block_width_problem("ghost", 26)


def test_malformed_yaml_file_names_the_line(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("stem:\n  type: [Conv\nstages: 3\n")
    with pytest.raises(ConfigError, match=r"malformed YAML at line \d+"):
        load_space(f)
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "missing.yaml")


def test_points_outside_the_space_are_refused():
    with pytest.raises(SearchError, match=r"'P3\.width' = 40 is not one of"):
        SPACE.decode(_point(**{"P3.width": 40}))
    p = _point()
    del p["sppf"]
    with pytest.raises(SearchError, match="lacks parameter"):
        SPACE.decode(p)


def test_ordinal_encoding_suggests_positions_of_sorted_numbers():
    # positions into the sorted lists of the default space: P4.width [64, 96, 128], neck.width
    # [32, 48, 64, 96], P3.expansion [2, 3, 4, 6]; block type and booleans stay categorical
    fixed = {name: (values[0] if name.endswith((".block", ".act", ".se", "type", "sppf")) else 0)
             for name, values in SPACE.choices.items()}
    fixed.update({"P4.width": 2, "neck.width": 3, "P3.expansion": 3, "P3.block": "mobilenetv2", "sppf": False})
    cand = SPACE.suggest(optuna.trial.FixedTrial(fixed))
    assert cand.point["P4.width"] == 128 and cand.point["neck.width"] == 96 and cand.point["P3.expansion"] == 6
    assert cand.point["P3.block"] == "mobilenetv2" and cand.point["sppf"] is False

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    SPACE.suggest(trial)
    dist = trial.distributions
    assert dist["P4.width"] == optuna.distributions.IntDistribution(0, 2)
    assert dist["neck.depth"] == optuna.distributions.IntDistribution(0, 1)
    assert isinstance(dist["P4.block"], optuna.distributions.CategoricalDistribution)
    assert isinstance(dist["sppf"], optuna.distributions.CategoricalDistribution)


def test_categorical_encoding_keeps_values_as_parameters():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    cand = SPACE.suggest(trial, "categorical")
    assert trial.params == cand.point
    assert trial.distributions["P4.width"] == optuna.distributions.CategoricalDistribution([64, 96, 128])
    with pytest.raises(SearchError, match="parameter encoding 'onehot'"):
        SPACE.suggest(trial, "onehot")
