"""The CPU training speed-ups keep the results: each fast path against the plain implementation it replaced."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latlab.detection.augment import AugmentConfig, hsv_jitter, hue_rotation, sampling_grid
from latlab.detection.checkpoint import load_checkpoint, save_checkpoint
from latlab.detection.device import parse_device
from latlab.detection.train import ModelEMA, clip_gradients, make_optimizer, match_state_layout
from latlab.ops.builder import build_model


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.SiLU(), nn.Conv2d(4, 2, 1))


def test_ema_update_equals_the_per_tensor_formula():
    model = small_net()
    ema = ModelEMA(model, decay=0.9, tau=1.0)
    before = {k: v.clone() for k, v in ema.ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    model.train()(torch.rand(2, 3, 8, 8))  # moves the BN running stats and num_batches_tracked
    ema.update(model)
    d = 0.9 * (1 - math.exp(-1.0))
    msd = model.state_dict()
    for k, v in ema.ema.state_dict().items():  # the old loop: v.mul_(d).add_(m, alpha=1 - d); ints copied
        expected = before[k].mul(d).add(msd[k], alpha=1 - d) if v.dtype.is_floating_point else msd[k]
        assert torch.equal(v, expected), k
    assert int(ema.ema[1].num_batches_tracked) == 1


@pytest.mark.parametrize("scale", [10.0, 1e-3])  # one clipped, one left alone
def test_clip_gradients_equals_torch_clip_grad_norm(scale):
    a, b = small_net(), small_net()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        pa.grad = torch.randn_like(pa) * scale
        pb.grad = pa.grad.clone()
    clip_gradients(list(a.parameters()), 10.0)
    torch.nn.utils.clip_grad_norm_(b.parameters(), max_norm=10.0, foreach=False)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa.grad, pb.grad)


@pytest.mark.parametrize("name", ["AdamW", "SGD"])
def test_fused_optimizer_follows_torchs_reference_loop(name):
    fast, ref = small_net(), small_net()
    opt = make_optimizer(fast, name, 0.01, 0.9, 5e-4)
    assert all(g.get("fused") for g in opt.param_groups)
    groups = [{"params": [dict(ref.named_parameters())[n] for n, p in fast.named_parameters()
                          if any(p is q for q in g["params"])], "weight_decay": g["weight_decay"]}
              for g in opt.param_groups]
    ref_opt = (torch.optim.AdamW(groups, lr=0.01, betas=(0.9, 0.999), foreach=False) if name == "AdamW"
               else torch.optim.SGD(groups, lr=0.01, momentum=0.9, nesterov=True, foreach=False))
    for step in range(3):
        torch.manual_seed(step)
        for pf, pr in zip(fast.parameters(), ref.parameters(), strict=True):
            pf.grad = torch.randn_like(pf)
            pr.grad = pf.grad.clone()
        opt.step()
        ref_opt.step()
    for pf, pr in zip(fast.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(pf, pr, rtol=1e-5, atol=1e-6)


def test_sampling_grid_equals_affine_grid():
    torch.manual_seed(0)
    theta = torch.randn(3, 2, 3)
    expected = F.affine_grid(theta, [3, 1, 7, 5], align_corners=False)
    got = sampling_grid(theta, 7, 5)
    assert got.shape == expected.shape and got.is_contiguous()
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # identity: the centres of the pixels, (2i + 1) / n - 1
    eye = sampling_grid(torch.tensor([[[1.0, 0, 0], [0, 1, 0]]]), 2, 4)
    assert eye[0, 1, :, 0].tolist() == [-0.75, -0.25, 0.25, 0.75] and eye[0, :, 0, 1].tolist() == [-0.5, 0.5]


def test_hsv_jitter_in_place_equals_the_out_of_place_formula():
    torch.manual_seed(1)
    imgs = torch.rand(4, 3, 6, 6)
    cfg = AugmentConfig()
    out = hsv_jitter(imgs.clone(), cfg, torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)  # the previous implementation, op for op
    gains = (torch.rand(4, 3, generator=g) * 2 - 1) * torch.tensor([cfg.hsv_h, cfg.hsv_s, cfg.hsv_v]) + 1
    x = torch.einsum("bij,bjhw->bihw", hue_rotation((gains[:, 0] - 1) * 2 * math.pi), imgs).clamp(0, 1)
    v = x.amax(1, keepdim=True)
    x = v + gains[:, 1, None, None, None] * (x - v)
    assert torch.equal(out, (x * gains[:, 2, None, None, None]).clamp(0, 1))


def test_cpu_trains_channels_last_with_the_same_outputs():
    assert parse_device("cpu").memory_format == torch.channels_last
    torch.manual_seed(0)
    model = build_model("yolov5n", nc=3).train()
    x = torch.rand(2, 3, 64, 64)
    ref = model(x)
    fast = parse_device("cpu").place(model)
    assert fast.layers[0].conv.weight.is_contiguous(memory_format=torch.channels_last)
    for a, b in zip(fast(parse_device("cpu").batch(x)), ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_resumed_optimizer_state_takes_the_channels_last_layout(tmp_path):
    """A checkpoint's contiguous momenta, loaded for channels-last weights, step exactly like the originals."""
    def net():
        torch.manual_seed(0)
        return nn.Conv2d(3, 4, 3).to(memory_format=torch.channels_last)

    def step(model, opt, seed):
        torch.manual_seed(seed)
        model.weight.grad = torch.randn(4, 3, 3, 3).to(memory_format=torch.channels_last)
        model.bias.grad = torch.randn(4)
        opt.step()

    a, b = net(), net()
    opt_a = make_optimizer(a, "AdamW", 0.01, 0.9, 5e-4)
    step(a, opt_a, 0)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "last.pt", {"model": a.state_dict(),
                                                                  "optimizer": opt_a.state_dict()}))
    b.load_state_dict(ckpt["model"])
    opt_b = make_optimizer(b, "AdamW", 0.01, 0.9, 5e-4)
    opt_b.load_state_dict(ckpt["optimizer"])  # contiguous tensors, as checkpoints hold them
    assert opt_b.state[b.weight]["exp_avg"].stride() != b.weight.stride()
    match_state_layout(opt_b)
    assert opt_b.state[b.weight]["exp_avg"].stride() == b.weight.stride()
    step(a, opt_a, 1)
    step(b, opt_b, 1)
    assert torch.equal(a.weight, b.weight) and torch.equal(a.bias, b.bias)
