"""Block-instance keys: every YAML layer is a unit, stacked copies are units of their own, keys are exact."""

from latlab.lut.keys import bound_args, make_key, model_units
from latlab.ops.blocks.yolo import Conv
from latlab.ops.builder import build_model


def test_seed_000_units_by_hand():
    # yolov5s-shufflenetv2: 22 YAML rows; rows 2, 4, 6 stack 3, 7, 3 Shuffle_Blocks → 22 + 2 + 6 + 2 = 32 units
    m = build_model("yolov5s-shufflenetv2")
    units = model_units(m, 160)
    assert len(units) == 32
    assert [u.part for u in units].count("stem") == 1
    assert units[-1].part == "head" and units[-1].type == "Detect"
    # layer 4: 7 copies at stride 16 → 160 / 16 = 10 px, 256 channels, all one key
    layer4 = [u for u in units if u.layer == 4]
    assert [u.path for u in layer4] == [f"layers.4.{j}" for j in range(7)]
    assert len({u.key for u in layer4}) == 1
    assert layer4[0].in_shapes == [(1, 256, 10, 10)]
    assert layer4[0].key.startswith("Shuffle_Block(c1=256,c2=256,stride=1)@1x256x10x10#")
    # distinct: layers 0..21 minus the repeats, minus neck Concats that coincide (none) → 22
    assert len({u.key for u in units}) == 22
    f = layer4[0].fields
    assert (f["type"], f["c_in"], f["c_out"], f["stride"], f["input"]) == ("Shuffle_Block", 256, 256, 1, "10x10")
    det = units[-1]
    assert det.multi_input and det.in_shapes == [(1, 128, 20, 20), (1, 256, 10, 10), (1, 512, 5, 5)]
    assert "anchors=3x3x2" in det.key and "nc=20" in det.key
    # the model is untouched
    assert m.training


def test_defaults_and_resolution_change_keys():
    # [c2] and [c2, 1, 1] build the same Conv: same bound arguments
    assert bound_args(Conv, [3, 16]) == bound_args(Conv, [3, 16, 1, 1])
    a = make_key("Conv", bound_args(Conv, [3, 16]), [(1, 3, 32, 32)], "deadbeef")
    b = make_key("Conv", bound_args(Conv, [3, 16]), [(1, 3, 64, 64)], "deadbeef")
    assert a != b and a.endswith("@1x3x32x32#deadbeef")
    cfg = {"nc": 4, "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [16, 3, 1, None, 1, 1, "relu"]]],
           "head": []}
    relu, silu = model_units(build_model(cfg), 32)[1], None
    cfg["backbone"][1][3][-1] = True
    silu = model_units(build_model(cfg), 32)[1]
    assert relu.key != silu.key
    assert relu.fields["activation"] == "relu" and silu.fields["kernel"] == 3
