"""A searchable block family is one descriptor: a toy family registered here (and nowhere else) is sampled,
built, counted, LUT-keyed, enumerated and proxy-costed through the search space; unknown families are errors."""

import numpy as np
import optuna
import pytest
import torch
from torch import nn

from latlab.errors import ConfigError, SearchError
from latlab.lut.keys import FIELD_PARAMS, model_units
from latlab.ops.builder import build_model
from latlab.ops.family import CostTally, SearchFamily, Stage
from latlab.ops.registry import (
    get_family,
    list_families,
    register_block,
    register_family,
    unregister_block,
    unregister_family,
)
from latlab.profiling.counter import count_model
from latlab.search.coverage import covering_points
from latlab.search.regret import ProxyObjective
from latlab.search.space import BLOCKS, load_space


class ToyConvBlock(nn.Module):
    """Toy searchable block: k×k conv + BN + ReLU. YAML: ``[c2, ksize=3, stride=1]``."""

    def __init__(self, c1: int, c2: int, ksize: int = 3, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, ksize, stride, ksize // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


def _toy_cost(t: CostTally, st: Stage, cin: float, stride: int, hw_in: float, hw_out: float) -> None:
    t.conv(cin, st.width, st.kernel, hw_out)


TOY = SearchFamily(
    name="toyconv", module="ToyConv", short="toy", knobs=("kernel",),
    block_args=lambda st, cin, s: [st.width, st.kernel, s], block_cost=_toy_cost,
    width_rule=lambda w: "toy blocks need width % 16 == 0" if w % 16 else None,
    fields={"kernel": "ksize"},  # not one of the usual constructor names (k, kernel_size, ...)
)

SPACE = {
    "name": "toy", "nc": 4, "channel_divisor": 8,
    "stem": {"type": ["CBRM"], "width": [16]},
    "stages": [{"name": "P3", "block": ["toyconv"], "depth": [2], "width": [32], "kernel": [3, 5]},
               {"name": "P4", "block": ["shufflenetv2"], "depth": [1], "width": [48]},
               {"name": "P5", "block": ["c3"], "depth": [1], "width": [64]}],
    "sppf": [False], "neck": {"width": [16], "depth": [1]},
}


@pytest.fixture
def toy_family():
    register_block("ToyConv", family="toy")(ToyConvBlock)
    register_family(TOY)
    try:
        yield TOY
    finally:
        unregister_family("toyconv")
        unregister_block("ToyConv")


def test_toy_family_is_sampled_built_counted_and_lut_keyed(toy_family):
    assert get_family("toyconv") is toy_family and "toyconv" in BLOCKS
    space = load_space(SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"P3.kernel": 1})  # ordinal encoding: position 1 of [3, 5]
    cand = space.suggest(study.ask())
    assert cand.point["P3.kernel"] == 5
    assert cand.cfg["backbone"][1:3] == [[-1, 1, "ToyConv", [32, 5, 2]], [-1, 1, "ToyConv", [32, 5, 1]]]
    assert "P3:toyk5x2w32" in cand.arch

    net = build_model(cand.cfg)
    ops = count_model(net, imgsz=64).ops
    # CBRM stem: stride 4, 16 channels at 16x16; the stage's first block strides to 8x8.
    madds = {m: int(ops.loc[ops["module"] == m, "madds"].sum()) for m in ("layers.1.conv", "layers.2.conv")}
    assert madds == {"layers.1.conv": 8 * 8 * 32 * 16 * 5 * 5, "layers.2.conv": 8 * 8 * 32 * 32 * 5 * 5}

    units = [u for u in model_units(net, 64) if u.type == "ToyConv"]
    assert [u.key.split("#")[0] for u in units] == ["ToyConv(c1=16,c2=32,ksize=5,stride=2)@1x16x16x16",
                                                     "ToyConv(c1=32,c2=32,ksize=5,stride=1)@1x32x8x8"]
    assert "ksize" not in FIELD_PARAMS["kernel"]  # the family's declaration is what names the kernel
    assert [(u.fields["kernel"], u.fields["stride"]) for u in units] == [(5, 2), (5, 1)]


def test_toy_family_enumerates_and_has_a_proxy_cost(toy_family):
    space = load_space(SPACE)
    kernels = {p["P3.kernel"] for p in covering_points(space)}
    assert kernels == {3, 5}  # the family uses the kernel knob, so both are distinct table units

    obj = ProxyObjective(space)  # imgsz 160: CBRM leaves 40x40 = 1600 px, the stage ends at 20x20 = 400 px
    point = space.random_point(np.random.default_rng(0))
    k3, k5 = ({**point, "P3.kernel": k} for k in (3, 5))
    diff = obj.costs(k5)["madds"] - obj.costs(k3)["madds"]
    assert diff == pytest.approx(400 * 32 * 16 * (25 - 9) + 400 * 32 * 32 * (25 - 9), rel=1e-12)


def test_toy_family_width_rule_rejects_a_space(toy_family):
    raw = {**SPACE, "stages": [{**SPACE["stages"][0], "width": [24]}, *SPACE["stages"][1:]]}
    with pytest.raises(ConfigError, match=r"toyconv.*width 24: toy blocks need width % 16 == 0"):
        load_space(raw)


def test_registration_is_undone_after_the_test():
    assert "toyconv" not in {f.name for f in list_families()}
    with pytest.raises(ConfigError, match="unknown block family 'toyconv'"):
        get_family("toyconv")


def test_unknown_family_is_an_error_naming_it():
    raw = {**SPACE, "stages": [{**SPACE["stages"][0], "block": ["nosuchblock"]}, *SPACE["stages"][1:]]}
    with pytest.raises(ConfigError, match=r"'nosuchblock' is not a known block family.*shufflenetv2"):
        load_space(raw)
    with pytest.raises(ConfigError, match="unknown block family 'nosuchblock'; known families: c3, ghost"):
        get_family("nosuchblock")
    # The regret proxy no longer costs an unknown family as C3.
    shipped = load_space()
    point = {**shipped.random_point(np.random.default_rng(0)), "P4.block": "nosuchblock"}
    with pytest.raises(ConfigError, match="nosuchblock"):
        ProxyObjective(shipped).costs(point)
    with pytest.raises(SearchError, match="nosuchblock"):
        shipped.decode(point)


def test_descriptor_and_registration_are_checked():
    with pytest.raises(ValueError, match="unknown knob"):
        SearchFamily(name="x", module="Conv", short="x", knobs=("width",), block_args=lambda s, c, st: [],
                     block_cost=_toy_cost)
    with pytest.raises(ValueError, match="exactly one of block_args and stage_rows"):
        SearchFamily(name="x", module="Conv", short="x", block_cost=_toy_cost)
    with pytest.raises(ValueError, match="not a registered block"):
        register_family(SearchFamily(name="x", module="NoSuchModule", short="x", block_args=lambda s, c, st: [],
                                     block_cost=_toy_cost))
    with pytest.raises(ValueError, match="already registered"):
        register_family(get_family("c3"))
