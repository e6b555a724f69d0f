"""Zero-cost proxies and naive baselines: a score from the untrained candidate in a few passes.

Every proxy builds the candidate with its default init under ``torch.manual_seed(ctx.seed)`` (or copies the
model it is given) and never touches the caller's RNG state; the same seed gives the same score. What each
score is, exactly (``N`` images, ``ctx.batch`` by default):

- ``synflow`` (Tanaka et al. 2020): every BatchNorm replaced by identity (the practice of the zero-cost-proxy
  paper, Abdelfattah et al. 2021, ``bn=False`` for synflow), parameters replaced by their absolute values,
  float64 (no overflow in deep nets), one all-ones input ``1×3×S×S``, train mode (the detector's raw maps);
  ``R`` = sum of every output element, ``synflow = Σ_θ |θ ⊙ ∂R/∂θ|``. The score is ``ln(synflow)`` (same
  ranking, a scale a sampler can model); the raw value is in ``details["synflow"]``.
- ``naswot`` (Mellor et al. 2021): ``N`` real training images drawn by ``ctx.seed``; a forward in train mode
  (batch statistics, as the paper's code); at every activation module (ReLU, ReLU6, LeakyReLU, SiLU,
  Hardswish, GELU, ELU, Mish; sigmoid gates excluded) the binary code ``c = [pre-activation > 0]`` of each
  image, concatenated over all activations; ``K_ij = N_A − Hamming(c_i, c_j) = c_i·c_j + (1−c_i)·(1−c_j)``;
  score ``= ln|det K|`` (slogdet, float64). For ReLU the code equals the paper's; for smooth activations it
  is the sign of the input, the natural generalisation.
- ``zico`` (Li et al., ICLR 2023): two batches of ``N`` real images and labels (drawn by ``ctx.seed``), the
  detection training loss (:class:`latlab.detection.loss.YoloLoss`), train mode; for every Conv2d/Linear
  weight the per-element gradient over the batches: ``score = Σ_layers ln(Σ_{θ: std>0} mean|g_θ| /
  std(g_θ))`` (population std, as the paper's code; layers whose sum is 0 skipped).
- ``maedet`` (Sun et al., ICML 2022, MAE-DET): BatchNorm replaced by identity, every Conv2d/Linear weight
  drawn from N(0, 1) (bias 0) by a generator seeded with ``ctx.seed``, float64, an input of 2 images of
  N(0, 1) noise; the backbone (the config's ``backbone`` rows) is run and its last P3, P4 and P5 outputs
  (strides 8, 16, 32) taken; ``score = Σ_s w_s · ln Var(F_s)`` (the differential entropy of a Gaussian up to
  constants) with equal weights ``w = (1, 1, 1)`` (the paper weights later stages more; its exact values
  are not restated here).
- ``params`` / ``madds``: the counter's totals for one ``1×3×S×S`` forward (kind ``baseline``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from latlab.detection.loss import YoloLoss
from latlab.errors import SearchError
from latlab.profiling.counter import count_model
from latlab.search.estimators.base import (
    AccuracyEstimator,
    EpochHook,
    Estimate,
    EstimatorSpec,
    cpu_clock,
    register_estimator,
)
from latlab.search.estimators.data import seeded_batch, seeded_model
from latlab.threads import torch_threads

RECTIFIERS: tuple[type[nn.Module], ...] = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.GELU,
                                           nn.ELU, nn.Mish)
MAEDET_STRIDES = (8, 16, 32)
MAEDET_WEIGHTS = (1.0, 1.0, 1.0)


# ---------------------------------------------------------------------------------------------------------
# The scores as functions of a network and its inputs (tested against hand-computed values)


def _sum_outputs(out: Any) -> torch.Tensor:
    """Sum of every element of a tensor or a (nested) list/tuple of tensors."""
    if isinstance(out, torch.Tensor):
        return out.sum()
    return sum((_sum_outputs(o) for o in out), torch.zeros((), dtype=torch.float64))


def _strip_batchnorm(net: nn.Module) -> nn.Module:
    """Replace every BatchNorm module of ``net`` by ``nn.Identity`` (in place)."""
    for name, child in list(net.named_children()):
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(net, name, nn.Identity())
        else:
            _strip_batchnorm(child)
    return net


def synflow_score(model: nn.Module, input_shape: Sequence[int]) -> float:
    """Σ |θ ⊙ ∂R/∂θ| of a float64, BN-free copy of ``model`` with |θ|, R = sum of outputs on all-ones input."""
    net = _strip_batchnorm(copy.deepcopy(model)).double().train()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    net.zero_grad(set_to_none=True)
    _sum_outputs(net(torch.ones(*input_shape, dtype=torch.float64))).backward()
    with torch.no_grad():
        return float(sum(((p * p.grad).abs().sum() for p in net.parameters() if p.grad is not None),
                         torch.zeros((), dtype=torch.float64)))


def naswot_kernel(codes: torch.Tensor) -> torch.Tensor:
    """``K = C Cᵀ + (1−C)(1−C)ᵀ`` for binary codes ``C`` [N, N_A]: N_A minus the pairwise Hamming distance."""
    c = codes.to(torch.float64).flatten(1)
    return c @ c.T + (1 - c) @ (1 - c).T


def naswot_score(model: nn.Module, x: torch.Tensor) -> float:
    """ln|det K| of the activation codes of ``model`` (train mode) on the batch ``x``; see the module doc."""
    kernel = torch.zeros(len(x), len(x), dtype=torch.float64)
    seen = []

    def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        kernel.add_(naswot_kernel((inputs[0].detach() > 0).flatten(1)))
        seen.append(1)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, RECTIFIERS)]
    was = model.training
    try:
        model.train()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    if not seen:
        raise SearchError("naswot: the network has no ReLU-like activation module to read codes from")
    return float(torch.linalg.slogdet(kernel)[1])


def zico_from_grads(grads: dict[str, list[torch.Tensor]]) -> float:
    """Σ_layers ln(Σ_{std>0} mean|g| / std(g)) over the per-batch gradients ``grads[layer]`` (≥ 2 each)."""
    score = 0.0
    for gs in grads.values():
        g = torch.stack([t.to(torch.float64).flatten() for t in gs])
        std, mean_abs = g.std(0, unbiased=False), g.abs().mean(0)
        nz = std != 0
        s = float((mean_abs[nz] / std[nz]).sum())
        if s > 0:
            score += math.log(s)
    return score


def zico_score(model: nn.Module, batches: Sequence[tuple[torch.Tensor, torch.Tensor]], loss_fn: Any) -> float:
    """ZiCo of ``model`` (train mode) from ``loss_fn(model(x), targets)[0]`` on each batch."""
    if len(batches) < 2:
        raise SearchError("zico needs at least two mini-batches")
    layers = {n: m for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}
    grads: dict[str, list[torch.Tensor]] = {n: [] for n in layers}
    model.train()
    for x, t in batches:
        model.zero_grad(set_to_none=True)
        loss_fn(model(x), t)[0].backward()
        for n, m in layers.items():
            if m.weight.grad is not None:
                grads[n].append(m.weight.grad.detach().clone())
    return zico_from_grads({n: g for n, g in grads.items() if len(g) >= 2})


def maedet_from_features(features: Sequence[torch.Tensor], weights: Sequence[float] = MAEDET_WEIGHTS) -> float:
    """Σ_s w_s · ln Var(F_s) (population variance over every element of feature map ``F_s``)."""
    if len(features) != len(weights):
        raise SearchError(f"maedet: {len(features)} feature maps for {len(weights)} weights")
    return float(sum(w * math.log(float(f.to(torch.float64).var(unbiased=False))) for f, w in zip(features, weights,
                                                                                                strict=True)))


def backbone_features(model: nn.Module, x: torch.Tensor, strides: Sequence[int] = MAEDET_STRIDES
                      ) -> list[torch.Tensor]:
    """The last output of the backbone rows (``model.yaml["backbone"]``) at each of ``strides`` of ``x``."""
    info = getattr(model, "layer_info", None)
    cfg = getattr(model, "yaml", None) or {}
    if info is None or "backbone" not in cfg:
        raise SearchError("maedet needs a YAML-built model with a 'backbone' section")
    size = x.shape[-1]
    saved: dict[int, Any] = {}
    last: dict[int, torch.Tensor] = {}
    for i, (m, li) in enumerate(zip(model.layers, info, strict=True)):
        if i >= len(cfg["backbone"]):
            break
        f = li.from_
        inp = [x if j == -1 else saved[j] for j in f] if isinstance(f, list) else (x if f == -1 else saved[f])
        x = saved[i] = m(inp)
        if isinstance(x, torch.Tensor) and x.dim() == 4:
            last[round(size / x.shape[-1])] = x
    missing = [s for s in strides if s not in last]
    if missing:
        raise SearchError(f"maedet: the backbone has no output at stride(s) {missing}")
    return [last[s] for s in strides]


def maedet_score(model: nn.Module, imgsz: int, seed: int, n: int = 2,
                 weights: Sequence[float] = MAEDET_WEIGHTS) -> float:
    """MAE-DET score of ``model``: Gaussian weights, no BN, Gaussian input; see the module docstring."""
    net = _strip_batchnorm(copy.deepcopy(model)).double().eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen, dtype=torch.float64))
                if m.bias is not None:
                    m.bias.zero_()
        x = torch.randn(n, 3, imgsz, imgsz, generator=gen, dtype=torch.float64)
        feats = backbone_features(net, x)
    return maedet_from_features(feats, weights)


# ---------------------------------------------------------------------------------------------------------
# The registered estimators


class _Proxy(AccuracyEstimator):
    """A score from the untrained candidate: build it (seeded), score it, measure the CPU time."""

    salt: ClassVar[int] = 0

    def estimate(self, cfg: dict[str, Any], model: nn.Module | None = None, *, out_dir: Path | None = None,
                 on_epoch_end: EpochHook | None = None) -> Estimate:
        with cpu_clock() as spent, torch_threads(self.ctx.threads):
            net = seeded_model(self.ctx, cfg, model, salt=self.salt)
            score, details = self.score(net)
            cost = spent()
        return Estimate(score=float(score), cost_s=cost, details=details)

    def score(self, net: nn.Module) -> tuple[float, dict[str, Any]]:
        """The score of the (private, seeded) network ``net`` and extra numbers for ``details``."""
        raise NotImplementedError


@register_estimator
class SynflowEstimator(_Proxy):
    spec = EstimatorSpec("synflow", "zero-cost", "ln of SynFlow (Tanaka et al. 2020): Σ|θ⊙∂R/∂θ|, |θ|, "
                         "all-ones input, BN off, float64")

    def score(self, net: nn.Module) -> tuple[float, dict[str, Any]]:
        raw = synflow_score(net, (1, 3, self.ctx.imgsz, self.ctx.imgsz))
        return (math.log(raw) if raw > 0 else float("-inf")), {"synflow": raw}


@register_estimator
class NaswotEstimator(_Proxy):
    spec = EstimatorSpec("naswot", "zero-cost", "NASWOT (Mellor et al. 2021): ln|det K| of the binary "
                         "activation codes of a seeded batch of real images")

    def score(self, net: nn.Module) -> tuple[float, dict[str, Any]]:
        x, _ = seeded_batch(self.ctx, max(self.ctx.batch, 2))
        return naswot_score(net, x), {"images": len(x)}


@register_estimator
class ZicoEstimator(_Proxy):
    spec = EstimatorSpec("zico", "zero-cost", "ZiCo (Li et al. 2023): Σ_layers ln Σ mean|g|/std(g) of the "
                         "detection loss's gradients over two seeded batches")

    def score(self, net: nn.Module) -> tuple[float, dict[str, Any]]:
        n = max(self.ctx.batch, 2)
        batches = [seeded_batch(self.ctx, n, i) for i in range(2)]
        loss = YoloLoss(net, imgsz=self.ctx.imgsz)
        return zico_score(net, batches, loss), {"images": 2 * n}


@register_estimator
class MaedetEstimator(_Proxy):
    spec = EstimatorSpec("maedet", "zero-cost", "MAE-DET (Sun et al. 2022): Σ ln Var of the backbone's "
                         "P3/P4/P5 maps, Gaussian weights and input, BN off")

    def score(self, net: nn.Module) -> tuple[float, dict[str, Any]]:
        return maedet_score(net, self.ctx.imgsz, self.ctx.seed), {"weights": list(MAEDET_WEIGHTS)}


class _Count(_Proxy):
    key: ClassVar[str]

    def score(self, net: nn.Module) -> tuple[float, dict[str, Any]]:
        totals = count_model(net, imgsz=self.ctx.imgsz).totals
        return float(totals[self.key]), {}


@register_estimator
class ParamsEstimator(_Count):
    key = "params"
    spec = EstimatorSpec("params", "baseline", "number of parameters (naive baseline: bigger is better)")


@register_estimator
class MaddsEstimator(_Count):
    key = "madds"
    spec = EstimatorSpec("madds", "baseline", "multiply-adds of one forward (naive baseline)")
