"""Weight-sharing supernet: slices equal a stand-alone model, training touches only the sampled path,
resume is deterministic, bad files are one-line errors."""

import math

import numpy as np
import pytest
import torch

from latlab.detection.data import load_dataset
from latlab.errors import SearchError
from latlab.ops.builder import build_model
from latlab.search.estimators import EstimatorContext, make_estimator
from latlab.search.evaluate import baseline_cfg
from latlab.search.space import load_space
from latlab.search.supernet import (
    Supernet,
    load_supernet,
    recalibrate_bn,
    row_slots,
    sample_paths,
    train_supernet,
)

TINY = {
    "name": "tiny", "nc": 10, "channel_divisor": 8,
    "stem": {"type": ["Conv", "CBRM"], "width": [8, 16]},
    "stages": [
        {"name": "P3", "block": ["mobilenetv3", "c3"], "depth": [1, 2], "width": [16, 24], "kernel": [3, 5],
         "expansion": [2, 3], "se": [False, True], "act": ["relu", "hardswish"]},
        {"name": "P4", "block": ["shufflenetv2", "mobilenetv2", "ghost"], "depth": [1, 2], "width": [16, 32],
         "kernel": [3, 5], "expansion": [2, 3]},
        {"name": "P5", "block": ["pplcnet", "c3"], "depth": [1, 2], "width": [24, 32], "kernel": [3, 5],
         "se": [False, True]},
    ],
    "sppf": [True, False],
    "neck": {"width": [8, 16], "depth": [1, 2]},
}


@pytest.fixture(scope="module")
def space():
    return load_space(TINY)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return load_dataset("builtin", imgsz=64, n_train=8, n_val=4, seed=5, root=tmp_path_factory.mktemp("d"))


@pytest.fixture(scope="module")
def net(space):
    return Supernet(space, imgsz=64, nc=10, seed=0)


def test_row_slots_name_stage_roles(space):
    p = {k: v[-1] if k.endswith(("depth", "width")) else v[0] for k, v in space.choices.items()}
    keys = row_slots(space.decode(p).cfg)
    # Conv stem + its 3x3 s2 conv; P3 mobilenetv3 x2 (two rows), P4 shufflenetv2 x2, P5 pplcnet x2; SPPF; 15 neck rows
    assert keys[:8] == ["stem.Conv.0", "stem.Conv.1", "P3.mobilenetv3.0", "P3.mobilenetv3.1", "P4.shufflenetv2.0",
                        "P4.shufflenetv2.1", "P5.pplcnet.0", "P5.pplcnet.1"]
    assert keys[8] == "sppf" and keys[9:] == [f"neck.{r}" for r in range(15)]


def test_slices_equal_standalone_model(space, net):
    rng = np.random.default_rng(3)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    calib = [torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(2))]
    for _ in range(3):
        p = space.random_point(rng)
        model = net.extract(p)
        shared = net.model_of(p)
        recalibrate_bn(shared, calib)  # same BN statistics in both (the extracted copy gets them below)
        model.load_state_dict({k: v for k, v in shared.state_dict().items() if "running" in k or "tracked" in k},
                              strict=False)
        model.eval()
        standalone = build_model(space.decode(p).cfg).eval()  # the builder's own model from the same YAML
        standalone.load_state_dict(model.state_dict())  # strict: every parameter and buffer is copied
        with torch.no_grad():
            ref = standalone(x)[0]
            got = net.forward(p, x)[0]
        assert torch.allclose(ref, got, atol=1e-5), space.decode(p).arch
        # and the copied weights are the leading slices / centre crops of the shared tensors
        for name, t in model.named_parameters():
            if name.endswith("conv.weight") and t.dim() == 4 and t.shape[1] == 1:  # a depthwise conv
                plan = net._plan(net.cfg_of(p))
                full = net.tensors[plan.flat[plan.names.index(name)]]
                o = (full.shape[-1] - t.shape[-1]) // 2
                assert torch.equal(t, full[:t.shape[0], :, o:o + t.shape[-1], o:o + t.shape[-1]].detach())


def test_neck_concat_inputs_take_each_part(space, net):
    p = space.random_point(np.random.default_rng(0))
    p.update({"P4.width": 16, "neck.width": 8})
    plan = net._plan(net.cfg_of(p))
    i = plan.names.index(next(n for n in plan.names if n.endswith("cv1.conv.weight") and
                              plan.flat[plan.names.index(n)].startswith("neck.3::")))
    idx = plan.index[i][1]
    # neck row 3 reads cat(P5 lateral upsampled: 2*neck.width, P4): max parts (32, 32), candidate (16, 16)
    assert idx.tolist() == list(range(16)) + list(range(32, 48))


def test_training_step_changes_only_sampled_path(space, data, tmp_path):
    out = tmp_path / "s.pt"
    train_supernet(space, out, steps=1, imgsz=64, data=data, seed=4, sampling="uniform", batch=4, save_every=0)
    trained, _ = load_supernet(out, space)
    fresh = Supernet(space, imgsz=64, nc=10, seed=4)
    used = fresh.uses(sample_paths(space, 4, 0, "uniform")[0])
    changed = {k for k in fresh.tensors if not torch.equal(fresh.tensors[k], trained.tensors[k])}
    assert changed and changed <= used
    assert len(changed) > len(used) // 2  # most of the path moved (AdamW moves every tensor with a gradient)


def test_resume_continues_and_is_deterministic(space, data, tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    full = train_supernet(space, a, steps=3, imgsz=64, data=data, seed=1, sampling="uniform", batch=4)
    first = train_supernet(space, b, steps=2, imgsz=64, data=data, seed=1, sampling="uniform", batch=4)
    rest = train_supernet(space, b, steps=1, imgsz=64, data=data, resume=True)
    assert (full.steps, first.steps, rest.steps, rest.new_steps) == (3, 2, 3, 1)
    na, ca = load_supernet(a, space)
    nb, cb = load_supernet(b, space)
    assert ca["step"] == cb["step"] == 3
    for k in na.tensors:
        assert torch.allclose(na.tensors[k], nb.tensors[k], atol=1e-6), k


def test_bad_files_are_one_line_errors(space, data, tmp_path):
    good = tmp_path / "g.pt"
    train_supernet(space, good, steps=1, imgsz=64, data=data, seed=0, sampling="uniform", batch=4)
    other = dict(TINY, neck={"width": [8, 24], "depth": [1]})
    with pytest.raises(SearchError, match="trained for space") as e:
        load_supernet(good, load_space(other))
    assert "\n" not in str(e.value)
    with pytest.raises(SearchError, match="imgsz 64, not 96"):
        load_supernet(good, space, imgsz=96)
    trunc = tmp_path / "t.pt"
    trunc.write_bytes(good.read_bytes()[:200])
    with pytest.raises(SearchError, match="corrupt or truncated") as e:
        load_supernet(trunc, space)
    assert "\n" not in str(e.value)
    lst = tmp_path / "l.pt"
    torch.save([1, 2], lst)
    with pytest.raises(SearchError, match="holds a list"):
        load_supernet(lst, space)
    torch.save({"format": 1}, lst)
    with pytest.raises(SearchError, match="missing"):
        load_supernet(lst, space)


def test_estimator_scores_a_point(space, data, tmp_path):
    out = tmp_path / "s.pt"
    train_supernet(space, out, steps=1, imgsz=64, data=data, seed=0, sampling="uniform", batch=4)
    ctx = EstimatorContext(data=data.root if hasattr(data, "root") else "builtin", imgsz=64, batch=4)
    est = make_estimator(f"supernet:{out}", ctx)
    est._scorer = None
    from latlab.search.supernet import SupernetScorer
    net, _ = load_supernet(out)
    est._scorer = SupernetScorer(net, data, bn_batches=1, batch=4, val_images=4)
    cfg = space.decode(space.random_point(np.random.default_rng(1))).cfg
    r1, r2 = est.estimate(cfg), est.estimate(cfg)
    assert r1.map == r2.map and 0.0 <= r1.map <= 1.0 and r1.cost_s > 0
    with pytest.raises(SearchError, match="not a point"):
        est.estimate({**cfg, "head": cfg["head"][:2]})
    with pytest.raises(SearchError, match="imgsz"):
        make_estimator(f"supernet:{out}", EstimatorContext(imgsz=96)).scorer()


def test_sandwich_paths(space):
    big, small, p = sample_paths(space, 0, 7, "sandwich")
    assert p == sample_paths(space, 0, 7, "uniform")[0] and p != sample_paths(space, 0, 8, "uniform")[0]
    assert big["P4.width"] == 32 and small["P4.width"] == 16 and big["neck.depth"] == 2 and small["stem.width"] == 8
    assert big["P3.block"] == small["P3.block"] == p["P3.block"]


def test_cli_bad_file_exits_2(tmp_path):
    from latlab.cli import main

    bad = tmp_path / "x.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["supernet", "eval", str(bad), "--arch", "yolov5n"]) == 2


def test_seed_baselines_get_no_supernet_score():
    """A seed detector is not a point of the space: the search's baseline trial gets NaN, not a failure."""
    est = make_estimator("supernet:never-loaded.pt", EstimatorContext(imgsz=64))
    got = est.estimate_baseline(baseline_cfg("yolov5n", 10))
    assert math.isnan(got.score) and got.map is None and "not a point" in got.details["note"]
