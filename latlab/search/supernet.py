"""A weight-sharing supernet for a search space: train once with sampled paths, then score any point in seconds.

Shared weights. Every model a space decodes to is a sequence of YAML rows with a fixed role: the stem (per stem
type), per backbone stage (P3/P4/P5) x block family x block index within the stage, SPPF, and each neck/head
row by its offset from the neck start. Each role is a *slot*; a slot keeps ONE tensor per parameter path,
shaped as the elementwise maximum of that parameter's shape over the space (found by building "envelope"
models at the largest widths, depths, kernels and input channels, on the meta device, for every
structural variant: block family x SE x expansion). A candidate's parameter is a slice of it:

- output channels: the leading ones (OFA-style elastic width, no channel-importance sorting);
- input channels: the leading ones, except where the input is a concatenation: the neck's Concat inputs (so the
  neck adapts to the chosen stage widths), C3's ``cv3`` (two halves) and SPPF's ``cv2`` (four quarters) take
  the leading channels *of each part*;
- kernels: the centre crop (OFA's elastic kernel without its kernel-transform matrices);
- depth: block ``k`` of a stage always uses slot ``k``, so a shallower stage uses the first blocks (OFA/SPOS).

Internal concatenations inside Ghost and ShuffleNetV2 units use plain leading slices (a known approximation:
those channels are shared across widths but do not keep one meaning).

A candidate runs as its own stand-alone model (built once from its YAML and cached by architecture hash),
through ``torch.func.functional_call`` with the slices as its parameters, so gradients flow into the shared
tensors, and what is trained is exactly the model the YAML builds. BatchNorm running statistics are not
shared: training uses batch statistics, and :meth:`Supernet.extract` / the estimator recalibrate them on a few
training batches before evaluating.

Training (:func:`train_supernet`) samples one path per step (SPOS: uniform over the space's choices), or with
the sandwich rule also the same families at the largest and smallest numeric choices, summing the losses;
the data pipeline, augmentation and loss are those of :mod:`latlab.detection.train`. Batches, augmentation and
paths are drawn from generators seeded by ``(seed, step)``, so a resumed run repeats the uninterrupted one.
Checkpoints are plain dicts of tensors and numbers (``torch.save``), read back with ``weights_only=True``.
"""

from __future__ import annotations

import copy
import math
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from latlab.detection.augment import AugmentConfig
from latlab.detection.checkpoint import save_checkpoint
from latlab.detection.data import DetectionData, LetterboxDataset, load_dataset
from latlab.detection.evaluate import evaluate
from latlab.detection.loss import LossHyp, YoloLoss
from latlab.detection.train import draw_batch, epoch_order
from latlab.errors import ConfigError, SearchError
from latlab.ops.blocks.yolo import C3, SPPF, Concat
from latlab.ops.builder import _parse_layers, build_model
from latlab.ops.model import LatlabModel
from latlab.ops.registry import list_families
from latlab.progress import ProgressReporter, as_progress
from latlab.search.space import STAGE_NAMES, SearchSpace, arch_hash, is_ordinal, load_space
from latlab.threads import torch_threads

FORMAT_VERSION = 1
CKPT_KEYS = ("format", "space", "space_hash", "imgsz", "nc", "step", "sampling", "seed", "tensors", "optimizer",
             "elapsed_s", "batch", "lr")
SAMPLINGS = ("uniform", "sandwich")
_SEGMENTS = {(C3, "cv3.conv.weight"): 2, (SPPF, "cv2.conv.weight"): 4}
"""(block class, parameter path) → number of equal concatenated parts its input channels consist of."""
_CONCAT_INPUT = {C3: ("cv1.conv.weight", "cv2.conv.weight")}
"""Parameters of a block that read a Concat row's output directly (others: ``conv.weight``)."""


# --------------------------------------------------------------------------------------------- layout
def row_slots(cfg: Mapping[str, Any]) -> list[str]:
    """Slot key of every block of ``cfg``'s rows, one list entry per row (``"|"``-joined when the row stacks
    ``number > 1`` blocks of a non-repeat module).

    The roles are read from the rows themselves (so zoo-style YAMLs of a space's points work too): the stem
    row(s), the three stages (delimited by the neck's Concat sources and the last backbone row), SPPF, and
    the head rows by offset. A model that does not have this layout is a ``SearchError``."""
    backbone, head = list(cfg["backbone"]), list(cfg["head"])
    b = len(backbone)
    try:
        p4, p3 = int(head[2][0][1]), int(head[6][0][1])
    except (IndexError, TypeError, ValueError):
        raise SearchError("model is not a point of a latlab search space (its neck has no Concat with P3/P4)") from None
    stem_end = 2 if (len(backbone) > 1 and backbone[0][2] in ("Conv", "conv_bn_hswish")) else 1
    stem = "Conv" if backbone[0][2] == "Conv" else str(backbone[0][2])
    p5 = b - 2 if backbone[-1][2] == "SPPF" else b - 1
    keys: list[str] = [f"stem.{stem}.{r}" for r in range(stem_end)]
    fams = {f.module: f for f in list_families()}
    for name, (lo, hi) in zip(STAGE_NAMES, ((stem_end, p3), (p3 + 1, p4), (p4 + 1, p5)), strict=True):
        rows = backbone[lo:hi + 1]
        if not rows or rows[-1][2] not in fams:
            raise SearchError(f"model is not a point of a latlab search space (stage {name} ends with "
                              f"{rows[-1][2] if rows else 'nothing'!r}, not a search block family)")
        fam = fams[rows[-1][2]]
        k = 0
        for row in rows:
            n = int(row[1])
            many = n > 1 and fam.stage_rows is None
            keys.append("|".join(f"{name}.{fam.name}.{k + j}" for j in range(n if many else 1)))
            k += n if many else 1
    if p5 < b - 1:
        keys.append("sppf")
    keys += [f"neck.{r}" for r in range(len(head))]
    return keys


def _build_candidate(cfg: dict[str, Any]) -> LatlabModel:
    """``build_model(cfg)`` without its dry run at 256 px (a second per model at search widths): a space's
    points always have Detect strides 8/16/32, which is all the dry run would find out."""
    return build_model(cfg, strides=(8, 16, 32))


def _param_slot(keys: list[str], name: str) -> tuple[int, str, str]:
    """``layers.<i>[.<j>].<path>`` → (row, slot key, path inside the block)."""
    _, i, rest = name.split(".", 2)
    row = int(i)
    slots = keys[row].split("|")
    if len(slots) > 1:
        j, rest = rest.split(".", 1)
        return row, slots[int(j)], rest
    return row, slots[0], rest


def _block_of(layer: nn.Module, keys: str, slot: str) -> nn.Module:
    slots = keys.split("|")
    return layer[slots.index(slot)] if len(slots) > 1 else layer  # type: ignore[index]


@dataclass
class _Plan:
    """How one candidate's parameters are cut from the shared tensors."""

    model: LatlabModel
    names: list[str]
    flat: list[str]
    index: list[tuple[Any, ...]]
    loss: YoloLoss | None = None


def _segments(max_parts: list[int], parts: list[int]) -> torch.Tensor:
    idx, base = [], 0
    for m, c in zip(max_parts, parts, strict=True):
        idx.append(torch.arange(base, base + c))
        base += m
    return torch.cat(idx)


def _take(t: torch.Tensor, index: tuple[Any, ...]) -> torch.Tensor:
    """Apply one plan entry: basic slices, with an index tensor on dim 1 for concatenated inputs."""
    out_sl, in_idx, rest = index
    x = t[out_sl]
    if in_idx is not None:
        x = x[:, in_idx] if isinstance(in_idx, slice) else x.index_select(1, in_idx)
    return x[(slice(None), slice(None), *rest)] if rest else x


class Supernet:
    """Shared max-size tensors for every slot of ``space`` at ``imgsz`` with ``nc`` classes.

    ``tensors`` maps ``"<slot>::<path>"`` to a leaf tensor (requires grad). Use :meth:`forward` for a
    weight-shared forward of a point, :meth:`extract` for a stand-alone model with the inherited weights."""

    def __init__(self, space: SearchSpace, *, imgsz: int, nc: int | None = None, seed: int = 0,
                 tensors: Mapping[str, torch.Tensor] | None = None, cache_size: int = 32):
        self.space, self.imgsz, self.nc, self.seed = space, int(imgsz), int(nc or space.nc), int(seed)
        self.shapes, self.max_out = self._layout()
        if tensors is None:
            tensors = self._init_tensors()
        self.tensors: dict[str, torch.Tensor] = {}
        for k, shape in self.shapes.items():
            if k not in tensors:
                raise SearchError(f"supernet tensors lack {k!r} (made for another space?)")
            t = tensors[k]
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
                raise SearchError(f"supernet tensor {k!r} has shape {tuple(getattr(t, 'shape', ()))}, expected {shape}")
            self.tensors[k] = t.detach().clone().float().requires_grad_(True)
        self._cache: OrderedDict[str, _Plan] = OrderedDict()
        self._cache_size = cache_size

    # ---------------------------------------------------------------------------------- structure
    def cfg_of(self, point_or_cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The model YAML dict of a point (decoded) or of a cfg (copied), with this supernet's ``nc``."""
        if "backbone" in point_or_cfg:
            cfg = copy.deepcopy(dict(point_or_cfg))
        else:
            cfg = self.space.decode(point_or_cfg).cfg
        cfg["nc"] = self.nc
        return cfg

    def envelope_points(self) -> list[dict[str, Any]]:
        """Points at the largest numeric choices, one per (block family, SE, expansion) combination, cycling
        the stem types: together they hold every parameter name at its largest shape."""
        ch = self.space.choices
        fams = sorted({f for s in STAGE_NAMES for f in ch[f"{s}.block"]})
        out = []
        combos = [(f, se, e) for f in fams for se in (False, True) for e in
                  sorted({e for s in STAGE_NAMES for e in ch[f"{s}.expansion"]})]
        n = max(len(combos), len(ch["stem.type"]))
        for i in range(n):
            f, se, e = combos[i % len(combos)]
            p = {k: (max(v) if is_ordinal(v) else v[0]) for k, v in ch.items()}
            p["stem.type"] = ch["stem.type"][i % len(ch["stem.type"])]
            p["sppf"] = True in ch["sppf"]
            for s in STAGE_NAMES:
                if f in ch[f"{s}.block"]:
                    p[f"{s}.block"] = f
                if se in ch[f"{s}.se"]:
                    p[f"{s}.se"] = se
                if e in ch[f"{s}.expansion"]:
                    p[f"{s}.expansion"] = e
            out.append(p)
        return out

    def _envelope_cfgs(self) -> Iterator[tuple[dict[str, Any], list[str]]]:
        """Each distinct envelope architecture once: its config and the slot key of each row."""
        seen: set[str] = set()
        for p in self.envelope_points():
            cfg = self.cfg_of(p)
            h = arch_hash(cfg)
            if h not in seen:
                seen.add(h)
                yield cfg, row_slots(cfg)

    def _layout(self) -> tuple[dict[str, tuple[int, ...]], dict[str, int]]:
        shapes: dict[str, tuple[int, ...]] = {}
        max_out: dict[str, int] = {}
        for cfg, keys in self._envelope_cfgs():
            with torch.device("meta"):
                layers, info = _parse_layers(cfg, 3, "<supernet envelope>")
            for i, li in enumerate(info):
                for s in keys[i].split("|"):
                    max_out[s] = max(max_out.get(s, 0), int(li.out_channels))
            for name, t in nn.ModuleList(layers).named_parameters():
                _, slot, path = _param_slot(keys, f"layers.{name}")
                k = f"{slot}::{path}"
                old = shapes.get(k)
                if old is not None and len(old) != t.dim():
                    raise SearchError(f"supernet slot {k}: parameter rank differs between architectures")
                shapes[k] = tuple(t.shape) if old is None else tuple(max(a, b) for a, b in zip(old, t.shape, strict=True))
        return shapes, max_out

    def _init_tensors(self) -> dict[str, torch.Tensor]:
        """Initial values: the envelope models' layers' own initialisation (plus YOLOv5's Detect bias
        priors), built under a seeded RNG (no dry run: it is what makes ``build_model`` slow at max size); a tensor no envelope model has at full shape gets PyTorch's conv init."""
        out: dict[str, torch.Tensor] = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for cfg, keys in self._envelope_cfgs():
                layers, _ = _parse_layers(cfg, 3, "<supernet envelope>")
                det = layers[-1]
                det.stride = torch.tensor([8.0, 16.0, 32.0])  # the space guarantees P3/P4/P5 strides
                det.initialize_biases()
                for name, t in nn.ModuleList(layers).named_parameters():
                    _, slot, path = _param_slot(keys, f"layers.{name}")
                    k = f"{slot}::{path}"
                    if k not in out and tuple(t.shape) == self.shapes[k]:
                        out[k] = t.detach().clone()
            for k, shape in self.shapes.items():
                if k not in out:
                    t = torch.empty(shape)
                    if len(shape) > 1:
                        nn.init.kaiming_uniform_(t, a=math.sqrt(5))
                    else:
                        nn.init.zeros_(t) if k.endswith("bias") else nn.init.ones_(t)
                    out[k] = t
        return out

    def _plan(self, cfg: dict[str, Any]) -> _Plan:
        h = arch_hash(cfg)
        if h in self._cache:
            self._cache.move_to_end(h)
            return self._cache[h]
        keys = row_slots(cfg)
        model = _build_candidate(cfg)
        names, flat, index = [], [], []
        for name, t in model.named_parameters():
            row, slot, path = _param_slot(keys, name)
            k = f"{slot}::{path}"
            if k not in self.shapes or t.dim() != len(self.shapes[k]) or any(
                    a > b for a, b in zip(t.shape, self.shapes[k], strict=True)):
                raise SearchError(f"architecture {h}: parameter {name} {tuple(t.shape)} is outside the supernet's "
                                  "space (another space, or a model that is not a point of it)")
            names.append(name)
            flat.append(k)
            index.append(self._index(model, keys, row, slot, path, tuple(t.shape), self.shapes[k]))
        plan = _Plan(model, names, flat, index)
        self._cache[h] = plan
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return plan

    def _index(self, model: LatlabModel, keys: list[str], row: int, slot: str, path: str,
               shape: tuple[int, ...], full: tuple[int, ...]) -> tuple[Any, ...]:
        out_sl = slice(0, shape[0])
        if len(shape) < 2:
            return out_sl, None, ()
        in_idx: Any = slice(0, shape[1])
        block = _block_of(model.layers[row], keys[row], slot)
        for (cls, p), parts in _SEGMENTS.items():
            if isinstance(block, cls) and path == p and shape[1] % parts == 0 and full[1] % parts == 0:
                in_idx = _segments([full[1] // parts] * parts, [shape[1] // parts] * parts)
        prev = model.layer_info[row].from_
        if prev == -1 and row > 0 and isinstance(model.layers[row - 1], Concat):
            reads = next((v for c, v in _CONCAT_INPUT.items() if isinstance(block, c)), ("conv.weight",))
            if path in reads:
                srcs = [row - 2 if j == -1 else j for j in model.layer_info[row - 1].from_]  # type: ignore[union-attr]
                parts = [int(model.layer_info[j].out_channels) for j in srcs]
                max_parts = [self.max_out[keys[j].split("|")[-1]] for j in srcs]
                if sum(parts) == shape[1] and sum(max_parts) == full[1]:
                    in_idx = _segments(max_parts, parts)
        rest = tuple(slice((f - s) // 2, (f - s) // 2 + s) for f, s in zip(full[2:], shape[2:], strict=True))
        return out_sl, in_idx, rest

    # ------------------------------------------------------------------------------------ use
    def params_of(self, point_or_cfg: Mapping[str, Any]) -> tuple[_Plan, dict[str, torch.Tensor]]:
        """The cached candidate model and its parameters as (differentiable) slices of the shared tensors."""
        plan = self._plan(self.cfg_of(point_or_cfg))
        params = {n: _take(self.tensors[k], ix) for n, k, ix in zip(plan.names, plan.flat, plan.index, strict=True)}
        return plan, params

    def forward(self, point_or_cfg: Mapping[str, Any], x: torch.Tensor) -> Any:
        """Forward ``x`` through the candidate with shared weights (its mode: train → batch BN statistics)."""
        plan, params = self.params_of(point_or_cfg)
        return functional_call(plan.model, params, (x,), strict=False)

    def model_of(self, point_or_cfg: Mapping[str, Any]) -> LatlabModel:
        """The cached stand-alone candidate model (its own parameters are not the shared ones)."""
        return self._plan(self.cfg_of(point_or_cfg)).model

    @torch.no_grad()
    def extract(self, point_or_cfg: Mapping[str, Any]) -> LatlabModel:
        """A stand-alone model of the candidate holding copies of its slices (BN statistics: the cached
        model's; recalibrate them with :func:`recalibrate_bn` before evaluating)."""
        plan, params = self.params_of(point_or_cfg)
        model = copy.deepcopy(plan.model)
        for name, p in model.named_parameters():
            p.copy_(params[name])
        return model

    def uses(self, point_or_cfg: Mapping[str, Any]) -> set[str]:
        """Names of the shared tensors the candidate reads."""
        return set(self._plan(self.cfg_of(point_or_cfg)).flat)

    def state(self) -> dict[str, torch.Tensor]:
        """The shared tensors, detached (what a checkpoint stores)."""
        return {k: t.detach().clone() for k, t in self.tensors.items()}


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: list[torch.Tensor]) -> nn.Module:
    """Reset every BatchNorm's running statistics and re-estimate them as a cumulative average over
    ``batches`` (train-mode forwards, no gradients); returns the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    for x in batches:
        model(x)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    return model.eval()


# ------------------------------------------------------------------------------------- sampling
def extreme_point(space: SearchSpace, point: Mapping[str, Any], largest: bool) -> dict[str, Any]:
    """``point`` with every numeric choice at its largest (or smallest) value; categorical ones kept."""
    pick = max if largest else min
    return {k: (pick(v) if is_ordinal(v) else point[k]) for k, v in space.choices.items()}


def sample_paths(space: SearchSpace, seed: int, step: int, sampling: str) -> list[dict[str, Any]]:
    """The point(s) trained at ``step``: one uniform point (SPOS), plus its largest and smallest numeric
    variants under the sandwich rule. Drawn from a generator seeded by ``(seed, step)``."""
    if sampling not in SAMPLINGS:
        raise ConfigError(f"supernet sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    p = space.random_point(np.random.default_rng([seed, step]))
    if sampling == "uniform":
        return [p]
    return [extreme_point(space, p, True), extreme_point(space, p, False), p]


# ------------------------------------------------------------------------------------ checkpoint
def save_supernet(path: Path | str, net: Supernet, *, step: int, sampling: str, optimizer: dict[str, Any] | None,
                  elapsed_s: float = 0.0, batch: int = 16, lr: float = 0.003) -> Path:
    """Write the supernet checkpoint (atomically): shared tensors, optimizer state and metadata."""
    return save_checkpoint(path, {"format": FORMAT_VERSION, "space": copy.deepcopy(net.space.raw),
                                  "space_hash": net.space.space_hash, "imgsz": net.imgsz,
                                  "nc": net.nc, "step": int(step), "sampling": sampling, "seed": net.seed,
                                  "tensors": net.state(), "optimizer": optimizer, "elapsed_s": float(elapsed_s),
                                  "batch": int(batch), "lr": float(lr)})


def read_supernet_file(path: Path | str) -> dict[str, Any]:
    """Read and check a supernet checkpoint (``weights_only=True``); a missing, corrupt or foreign file is
    a one-line ``SearchError``."""
    path = Path(path)
    if not path.is_file():
        raise SearchError(f"{path}: supernet file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SearchError(f"{path}: not a readable supernet checkpoint (corrupt or truncated: {first[:120]})") from None
    if not isinstance(ckpt, dict):
        raise SearchError(f"{path}: not a supernet checkpoint (holds a {type(ckpt).__name__}, expected a dict)")
    missing = [k for k in CKPT_KEYS if k not in ckpt]
    if missing:
        raise SearchError(f"{path}: not a supernet checkpoint (missing {', '.join(missing)})")
    if ckpt["format"] != FORMAT_VERSION:
        raise SearchError(f"{path}: supernet format {ckpt['format']!r}, this latlab reads {FORMAT_VERSION}")
    if not isinstance(ckpt["tensors"], dict):
        raise SearchError(f"{path}: supernet 'tensors' is not a dict of tensors")
    return ckpt


def load_supernet(path: Path | str, space: SearchSpace | str | Path | Mapping[str, Any] | None = None, *,
                  imgsz: int | None = None) -> tuple[Supernet, dict[str, Any]]:
    """Load a supernet for ``space`` (``None``: the space stored in the file) and ``imgsz`` (when given): a
    file made for another space or image size is a one-line ``SearchError``. Returns (supernet, checkpoint)."""
    ckpt = read_supernet_file(path)
    if space is None:
        if not isinstance(ckpt["space"], dict):
            raise SearchError(f"{path}: supernet checkpoint holds no search space")
        sp = _load_stored_space(ckpt["space"], path)
    else:
        sp = space if isinstance(space, SearchSpace) else load_space(space)
    if ckpt["space_hash"] != sp.space_hash:
        raise SearchError(f"{path}: supernet was trained for space {ckpt['space_hash']}, not {sp.source} "
                          f"({sp.space_hash})")
    if imgsz is not None and int(ckpt["imgsz"]) != int(imgsz):
        raise SearchError(f"{path}: supernet was trained at imgsz {ckpt['imgsz']}, not {imgsz}")
    net = Supernet(sp, imgsz=int(ckpt["imgsz"]), nc=int(ckpt["nc"]), seed=int(ckpt["seed"]), tensors=ckpt["tensors"])
    return net, ckpt


def _load_stored_space(raw: dict[str, Any], path: Path | str) -> SearchSpace:
    try:
        sp = load_space(raw)
    except ConfigError as exc:
        raise SearchError(f"{path}: the search space stored in the supernet is invalid ({exc})") from None
    sp.source = f"{path} (stored space)"
    return sp


def check_cfg_space(net: Supernet, cfg: Mapping[str, Any]) -> None:
    """Refuse a candidate that says it was decoded from another space (``meta.source`` names its hash)."""
    source = str((cfg.get("meta") or {}).get("source", ""))
    if source.startswith("latlab search space") and f"({net.space.space_hash})" not in source:
        raise SearchError(f"candidate comes from another search space ({source.split(', arch')[0]}); the supernet "
                          f"was trained for {net.space.space_hash}")


# -------------------------------------------------------------------------------------- training
@dataclass
class SupernetTrainResult:
    """What :func:`train_supernet` did: the file, steps done in all, this call's steps, final mean loss."""

    path: Path
    steps: int
    new_steps: int
    loss: float
    elapsed_s: float
    sampling: str


def _optimizer(net: Supernet, lr: float, momentum: float = 0.937, weight_decay: float = 5e-4
               ) -> torch.optim.Optimizer:
    """AdamW with train.py's groups: conv weights decayed, norm weights and biases not."""
    decay = [t for k, t in sorted(net.tensors.items()) if t.dim() > 1]
    no_decay = [t for k, t in sorted(net.tensors.items()) if t.dim() == 1 and not k.endswith("bias")]
    biases = [t for k, t in sorted(net.tensors.items()) if t.dim() == 1 and k.endswith("bias")]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}, {"params": biases, "weight_decay": 0.0}],
                             lr=lr, betas=(momentum, 0.999))


def train_batch(train_set: LetterboxDataset, step: int, *, batch: int, seed: int,
                augment: AugmentConfig | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training batch ``step`` exactly as ``latlab.detection.train`` draws it: epoch permutation from
    ``(seed, epoch)``, letterbox, collate, augmentation from ``(seed, epoch, batch + 1)``."""
    n = len(train_set)
    epoch, bi = divmod(step, math.ceil(n / batch))
    return draw_batch(train_set, epoch_order(n, seed, epoch), epoch, bi, batch, seed, augment)


def train_supernet(space: SearchSpace | str | Path | Mapping[str, Any] | None, out: Path | str, *,
                   minutes: float | None = None, steps: int | None = None, imgsz: int = 160,
                   data: str | Path | DetectionData = "builtin", data_kwargs: dict[str, Any] | None = None,
                   seed: int = 0, sampling: str = "sandwich", batch: int = 16, lr: float = 0.003,
                   warmup_steps: int = 100, grad_clip: float = 10.0, save_every: int = 50, resume: bool = False,
                   augment: bool = True, threads: int | None = None,
                   progress: bool | ProgressReporter = False) -> SupernetTrainResult:
    """Train the supernet of ``space`` into ``out`` for ``minutes`` of wall time and/or ``steps`` more steps.

    ``resume=True`` continues ``out`` (its space, imgsz, seed, sampling, batch and lr win; the step counter,
    optimizer state and elapsed time continue). Checkpoints every ``save_every`` steps and at the end.
    LR: linear warm-up over ``warmup_steps``, then constant (a time budget has no known end to decay to)."""
    if minutes is None and steps is None:
        raise ConfigError("give minutes and/or steps for the supernet training")
    if (minutes is not None and minutes <= 0) or (steps is not None and steps < 1):
        raise ConfigError(f"minutes must be > 0 and steps >= 1 (got minutes={minutes}, steps={steps})")
    if sampling not in SAMPLINGS:
        raise ConfigError(f"supernet sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    out = Path(out)
    sp = space if isinstance(space, SearchSpace) else load_space(space)
    with torch_threads(threads or None):
        if resume:
            net, ckpt = load_supernet(out, sp)
            step0, elapsed0 = int(ckpt["step"]), float(ckpt["elapsed_s"])
            sampling, batch, lr, seed, imgsz = ckpt["sampling"], int(ckpt["batch"]), float(ckpt["lr"]), net.seed, net.imgsz
        else:
            ckpt, step0, elapsed0 = None, 0, 0.0
        ds = data if isinstance(data, DetectionData) else load_dataset(data, imgsz=imgsz, **(data_kwargs or {}))
        if not resume:
            net = Supernet(sp, imgsz=imgsz, nc=ds.nc, seed=seed)
        elif ds.nc != net.nc:
            raise SearchError(f"{out}: supernet has nc={net.nc} but the data has nc={ds.nc}")
        opt = _optimizer(net, lr)
        if ckpt is not None and ckpt["optimizer"] is not None:
            opt.load_state_dict(ckpt["optimizer"])
        train_set = LetterboxDataset(ds.train, imgsz)
        aug = AugmentConfig() if augment else None
        hyp = LossHyp()
        params = list(net.tensors.values())
        t0 = time.perf_counter()
        step, losses = step0, []
        reporter = as_progress(progress)
        budget = minutes * 60 if minutes is not None else None
        with reporter.task("supernet", steps if steps is not None else budget, transient=False) as bar:
            while (steps is None or step - step0 < steps) and (budget is None or time.perf_counter() - t0 < budget):
                imgs, targets = train_batch(train_set, step, batch=batch, seed=seed, augment=aug)
                for gp in opt.param_groups:
                    gp["lr"] = lr * min(1.0, (step + 1) / max(1, warmup_steps))
                opt.zero_grad(set_to_none=True)
                total = 0.0
                for p in sample_paths(sp, seed, step, sampling):
                    plan, sliced = net.params_of(p)
                    if plan.loss is None:
                        plan.loss = YoloLoss(plan.model, hyp, imgsz=imgsz)
                    plan.model.train()
                    preds = functional_call(plan.model, sliced, (imgs,), strict=False)
                    loss, _ = plan.loss(preds, targets)
                    loss.backward()
                    total += float(loss.detach())
                if grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, max_norm=grad_clip)
                opt.step()
                step += 1
                losses.append(total)
                bar.set(completed=step - step0 if steps is not None else time.perf_counter() - t0,
                        description=f"supernet step {step} loss {total:.3f}")
                if save_every and step % save_every == 0:
                    save_supernet(out, net, step=step, sampling=sampling, optimizer=opt.state_dict(),
                                  elapsed_s=elapsed0 + time.perf_counter() - t0, batch=batch, lr=lr)
        elapsed = elapsed0 + time.perf_counter() - t0
        save_supernet(out, net, step=step, sampling=sampling, optimizer=opt.state_dict(), elapsed_s=elapsed,
                      batch=batch, lr=lr)
    tail = losses[-20:]
    return SupernetTrainResult(out, step, step - step0, float(np.mean(tail)) if tail else float("nan"), elapsed,
                               sampling)


# ------------------------------------------------------------------------------------ estimating
class SupernetScorer:
    """Score candidates with inherited weights: recalibrate BN on ``bn_batches`` fixed training batches (no
    augmentation), then mAP50-95 on the first ``val_images`` validation images."""

    def __init__(self, net: Supernet, ds: DetectionData, *, bn_batches: int = 2, batch: int = 16,
                 val_images: int = 48, seed: int = 0):
        self.net, self.ds, self.val_images = net, ds, val_images
        train_set = LetterboxDataset(ds.train, net.imgsz)
        self.calib = [train_batch(train_set, i, batch=batch, seed=seed, augment=None)[0] for i in range(bn_batches)]

    def model(self, point_or_cfg: Mapping[str, Any]) -> LatlabModel:
        """The stand-alone candidate with inherited weights and recalibrated BN (eval mode)."""
        return recalibrate_bn(self.net.extract(point_or_cfg), self.calib)  # type: ignore[return-value]

    def score(self, point_or_cfg: Mapping[str, Any]) -> dict[str, Any]:
        """:func:`latlab.detection.evaluate.evaluate`'s dict for the candidate (``map``, ``map50``...)."""
        return evaluate(self.model(point_or_cfg), self.ds, imgsz=self.net.imgsz, max_images=self.val_images)
