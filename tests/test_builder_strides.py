"""Known Detect strides skip the builder's dry run and give the same detector as the dry run finds."""

import torch

from latlab.ops.builder import build_model


def test_known_strides_build_the_same_detector_as_the_dry_run():
    probed = build_model("yolov5n", nc=10)
    given = build_model("yolov5n", nc=10, strides=(8, 16, 32))
    assert torch.equal(probed.stride, torch.tensor([8.0, 16.0, 32.0]))  # YOLOv5's P3/P4/P5
    assert torch.equal(given.stride, probed.stride)
    assert torch.equal(given.detect.anchors, probed.detect.anchors)
    given.load_state_dict(probed.state_dict())
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(given.eval()(x)[0], probed.eval()(x)[0])
