"""Train a detector YOLOv5-style on the CPU or a GPU: SGD/AdamW, warm-up, linear/cosine LR, EMA, AMP,
checkpoints, resume.

One function, :func:`train`, serves the CLI, notebooks and the architecture search:

- ``epochs=N`` trains N epochs; ``minutes=M`` trains until M minutes of wall time have passed (the LR
  schedule then runs on the elapsed-time fraction), which is what a search trial wants.
- Every epoch ends with an evaluation of the EMA weights, a row in ``metrics.csv``, a checkpoint
  (``last.pt``, plus ``best.pt`` by fitness 0.1·mAP50 + 0.9·mAP) and the ``on_epoch_end(epoch, metrics)``
  hook; the hook returning ``True`` stops training (search pruning).
- ``resume=True`` reloads ``last.pt`` and continues with the run's saved settings. Shuffling and
  augmentation are drawn from generators seeded by ``(seed, epoch, batch)`` and pending gradients are
  flushed at each epoch end, so a resumed run repeats the uninterrupted one.
- ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``mps``) and ``amp`` choose where and in which precision the
  model trains (:mod:`latlab.detection.device`: fp16 with a GradScaler on CUDA by default, cudnn.benchmark,
  channels-last; bf16 on the CPU on request). Batches are drawn on the CPU and moved there; checkpoints
  hold CPU tensors, so a run may resume or be evaluated on another device.

Loss gains, augmentation, momentum 0.937, weight decay 5e-4, warm-up (bias lr 0.1, momentum 0.8, at least
100 iterations), gradient-norm clip 10 and EMA (decay 0.9999, τ 2000) follow YOLOv5's
``hyp.scratch-low.yaml``. The defaults differ from YOLOv5 in three places because latlab trains from
scratch for minutes, not 300 epochs: AdamW (lr0 0.003) instead of SGD, no gradient accumulation
(``nbs=None``: every batch is an optimizer step) and 1 warm-up epoch instead of 3. On the built-in data
that reaches a useful mAP several times faster. YOLOv5's exact recipe is
``optimizer="SGD", lr0=0.01, nbs=64, warmup_epochs=3``.
"""

from __future__ import annotations

import copy
import json
import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from latlab.detection.augment import AugmentConfig, augment_batch
from latlab.detection.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from latlab.detection.data import Batch, BatchLoader, DetectionData, LetterboxDataset, collate, load_dataset
from latlab.detection.device import parse_device
from latlab.detection.evaluate import evaluate
from latlab.detection.loss import LossHyp, YoloLoss, find_detect
from latlab.errors import ConfigError
from latlab.ops.builder import build_model
from latlab.progress import ProgressReporter, ProgressTask, as_progress
from latlab.runs import RunWriter, new_run_dir, removed_if_left_empty
from latlab.threads import torch_threads

HISTORY_COLUMNS = ["epoch", "iterations", "images", "box_loss", "obj_loss", "cls_loss", "lr", "map50", "map",
                   "train_s", "elapsed_s", "partial"]
EpochHook = Callable[[int, dict[str, Any]], bool]
FUSED_OPTIMIZER_DEVICES = ("cpu", "cuda")  # where torch has fused AdamW and SGD kernels


@dataclass
class TrainResult:
    """What a training run produced. ``history`` has :data:`HISTORY_COLUMNS` (one row per epoch)."""

    name: str
    run_dir: Path
    last: Path
    best: Path | None
    epochs: int
    map50: float
    map: float
    metrics: dict[str, Any]
    history: pd.DataFrame
    per_class: pd.DataFrame
    wall_s: float
    train_s: float
    images_seen: int
    images_per_s: float
    stopped_by: str
    model: nn.Module = field(repr=False)
    device: str = "cpu"
    amp: str = "off"


class ModelEMA:
    """Exponential moving average of weights (YOLOv5): decay ramps up as ``d·(1 − exp(−updates/τ))``.

    The float tensors of both state dicts are paired once and updated with one fused ``torch._foreach``
    call per step (not one ``mul_``/``add_`` per tensor); like an optimizer, this relies on the model's
    tensors being updated in place (``load_state_dict`` and optimizer steps do)."""

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0):
        self.ema = copy.deepcopy(model).eval()
        for p in self.ema.parameters():
            p.requires_grad_(False)
        self.decay, self.tau, self.updates = decay, tau, updates
        self._pairs: tuple[list[torch.Tensor], ...] | None = None
        self._source: nn.Module | None = None

    def _paired(self, model: nn.Module) -> tuple[list[torch.Tensor], ...]:
        """``(ema floats, model floats, ema others, model others)``: matching tensors of the two state dicts."""
        if self._pairs is None or self._source is not model:
            msd, pairs = model.state_dict(), ([], [], [], [])
            for k, v in self.ema.state_dict().items():
                i = 0 if v.dtype.is_floating_point else 2
                pairs[i].append(v)
                pairs[i + 1].append(msd[k].detach())
            self._pairs, self._source = pairs, model
        return self._pairs

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        ema_f, model_f, ema_o, model_o = self._paired(model)
        torch._foreach_mul_(ema_f, d)
        torch._foreach_add_(ema_f, model_f, alpha=1 - d)
        for v, m in zip(ema_o, model_o, strict=True):
            v.copy_(m)


def make_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float
                   ) -> torch.optim.Optimizer:
    """YOLOv5's three parameter groups: weights (decayed), norm weights and biases (not decayed).

    Group order is fixed (0 weights, 1 norm weights, 2 biases) so warm-up can address the bias group.
    On the CPU and CUDA the optimizer is ``fused`` (one vectorised kernel updates every parameter: several
    times faster than torch's CPU default, which loops over the parameters; results agree to float rounding),
    elsewhere ``foreach``.
    """
    decay, no_decay, biases = [], [], []
    norm_types = tuple(v for k, v in vars(nn).items() if "Norm" in k and isinstance(v, type))
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if pname == "bias":
                biases.append(p)
            elif isinstance(module, norm_types):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0},
              {"params": biases, "weight_decay": 0.0}]
    key = name.lower()
    fused = all(p.device.type in FUSED_OPTIMIZER_DEVICES for p in decay + no_decay + biases)
    kernels = {"fused": True} if fused else {"foreach": True}
    if key == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=True, **kernels)
    elif key == "adamw":
        opt = torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999), **kernels)
    else:
        raise ConfigError(f"optimizer must be 'SGD' or 'AdamW', got {name!r}")
    return opt


def lr_factor(progress: float, lrf: float, schedule: str) -> float:
    """LR multiplier at training progress in [0, 1]: linear or cosine from 1 to ``lrf``."""
    p = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return (1 - p) * (1.0 - lrf) + lrf
    if schedule == "cosine":
        return ((1 - math.cos(p * math.pi)) / 2) * (lrf - 1) + 1
    raise ConfigError(f"lr schedule must be 'linear' or 'cosine', got {schedule!r}")


def _build(cfg_or_model: Any, nc: int, width_multiple: float | None, depth_multiple: float | None) -> nn.Module:
    if isinstance(cfg_or_model, nn.Module):
        model_nc = int(find_detect(cfg_or_model).nc)
        if model_nc != nc:
            raise ConfigError(f"model has nc={model_nc} but the data has nc={nc} classes")
        return cfg_or_model

    model = build_model(cfg_or_model, nc=nc, width_multiple=width_multiple, depth_multiple=depth_multiple)
    if not getattr(model, "is_detector", True):
        raise ConfigError(f"{cfg_or_model}: not a detector (no Detect head); train needs one")
    return model


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _gen(seed: int, *parts: int) -> torch.Generator:
    s = seed
    for p in parts:
        s = (s * 1_000_003 + p + 1) % (2**63 - 1)
    return torch.Generator().manual_seed(s)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order of the ``n`` training images in ``epoch`` (a function of ``(seed, epoch)`` only)."""
    return torch.randperm(n, generator=_gen(seed, epoch))


def draw_batch(train_set: LetterboxDataset, order: torch.Tensor, epoch: int, bi: int, batch: int, seed: int,
               aug: AugmentConfig | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch ``bi`` of ``epoch`` in ``order``: letterboxed, collated, scaled to [0, 1] and augmented from
    ``(seed, epoch, bi + 1)``, so a resumed run (or the supernet's trainer) draws exactly the same batches."""
    return scale_and_augment(collate([train_set[i] for i in order[bi * batch:(bi + 1) * batch].tolist()]),
                             epoch, bi, seed, aug)


def scale_and_augment(loaded: Batch, epoch: int, bi: int, seed: int, aug: AugmentConfig | None
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """A collated uint8 batch scaled to [0, 1] and augmented from ``(seed, epoch, bi + 1)``."""
    imgs, targets = loaded.imgs.float() / 255, loaded.targets
    if aug is not None:
        imgs, targets = augment_batch(imgs, targets, aug, _gen(seed, epoch, bi + 1))
    return imgs, targets


def train(cfg_or_model: str | Path | dict | nn.Module, *, data: str | Path | DetectionData = "builtin",
          epochs: int | None = None, minutes: float | None = None, imgsz: int = 160, batch: int = 16,
          resume: bool = False, out_dir: Path | str | None = None, name: str | None = None, force: bool = False,
          seed: int = 0,
          optimizer: str = "AdamW", lr0: float | None = None, lrf: float = 0.01, lr_schedule: str = "linear",
          momentum: float = 0.937, weight_decay: float = 5e-4, warmup_epochs: float = 1.0, nbs: int | None = None,
          use_ema: bool = True, grad_clip: float = 10.0, hyp: LossHyp | None = None,
          augment: AugmentConfig | bool = True, val_every: int = 1, val_max_images: int | None = None,
          on_epoch_end: EpochHook | None = None, progress: bool | ProgressReporter = True,
          threads: int | None = None, workers: int = 0, device: str = "cpu", amp: str = "auto",
          width_multiple: float | None = None, depth_multiple: float | None = None,
          data_kwargs: dict[str, Any] | None = None) -> TrainResult:
    """Train ``cfg_or_model`` (zoo name, YAML path, dict or a built detector) on ``data``.

    Exactly one of ``epochs`` / ``minutes`` may be given (neither: 10 epochs). Results go to ``out_dir`` or
    ``results/train/<name>/``: ``metrics.csv`` (per epoch), ``per_class.csv``, ``final.json``,
    ``meta.json``, ``last.pt`` and ``best.pt``. An existing ``name`` is refused unless ``resume`` or ``force``
    (which deletes the old run); a failed call leaves no empty run folder behind. ``threads`` sets torch's intra-op thread count for the run
    (restored on return, also on errors); ``progress`` is True (rich bars), False or a ``ProgressReporter``.
    ``workers`` DataLoader processes decode and letterbox the training images (0: in this process).
    ``device``/``amp``: where and in which precision to train (a missing GPU is a ``DeviceError`` before
    anything is written); a built model passed in is moved there. A resumed run may use another device.
    """
    t_start = time.perf_counter()
    if epochs is not None and minutes is not None:
        raise ConfigError("give either epochs or minutes, not both")
    if epochs is None and minutes is None:
        epochs = 10
    if (epochs is not None and epochs < 1) or (minutes is not None and minutes <= 0):
        raise ConfigError(f"epochs must be >= 1 and minutes > 0 (got epochs={epochs}, minutes={minutes})")
    dev = parse_device(device, amp)
    run_dir = Path(out_dir) if out_dir is not None else new_run_dir("train", name, resume=resume, force=force)
    run_dir.mkdir(parents=True, exist_ok=True)
    # threads and device state restored on return and on errors; a run folder left empty is removed
    with torch_threads(threads or None), dev.session(), removed_if_left_empty(run_dir):
        last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

        settings = {"epochs": epochs, "minutes": minutes, "imgsz": imgsz, "batch": batch, "seed": seed,
                    "optimizer": optimizer, "lr0": lr0, "lrf": lrf, "lr_schedule": lr_schedule, "momentum": momentum,
                    "weight_decay": weight_decay, "warmup_epochs": warmup_epochs, "nbs": nbs, "use_ema": use_ema,
                    "grad_clip": grad_clip, "val_every": val_every, "val_max_images": val_max_images,
                    "data": data.name if isinstance(data, DetectionData) else str(data),
                    "hyp": asdict(hyp or LossHyp()),
                    "augment": asdict(augment if isinstance(augment, AugmentConfig) else AugmentConfig())
                    if augment else None}
        ckpt = None
        if resume:
            if not last_path.is_file():
                raise ConfigError(f"{last_path}: nothing to resume (no checkpoint in {run_dir})")
            ckpt = load_checkpoint(last_path)
            settings = dict(ckpt["settings"])  # the run's own settings win over the call's
        s = settings
        epochs, minutes, imgsz, batch, seed = s["epochs"], s["minutes"], s["imgsz"], s["batch"], s["seed"]
        hyp = LossHyp(**s["hyp"])
        aug = AugmentConfig(**s["augment"]) if s["augment"] else None

        ds = data if isinstance(data, DetectionData) else load_dataset(data, imgsz=imgsz, **(data_kwargs or {}))
        _seed_all(seed)
        model = dev.place(_build(cfg_or_model, ds.nc, width_multiple, depth_multiple))
        det = find_detect(model)
        max_stride = int(det.stride.max())
        if imgsz % max_stride:
            raise ConfigError(f"imgsz {imgsz} must be a multiple of the model's max stride {max_stride}")
        compute_loss = YoloLoss(model, hyp, imgsz=imgsz)

        train_set = LetterboxDataset(ds.train, imgsz)
        loader = BatchLoader(train_set, batch, workers=workers, device=dev.name)
        n = len(train_set)
        nb = math.ceil(n / batch)
        nbs = s["nbs"] or batch
        accumulate = max(round(nbs / batch), 1)
        wd = s["weight_decay"] * batch * accumulate / nbs
        lr_start = s["lr0"] if s["lr0"] is not None else (0.01 if s["optimizer"].lower() == "sgd" else 0.003)
        opt = make_optimizer(model, s["optimizer"], lr_start, s["momentum"], wd)
        params = [p for p in model.parameters() if p.requires_grad]  # listed once: walking modules costs per step
        for gp in opt.param_groups:
            gp["initial_lr"] = lr_start
        ema = ModelEMA(model) if s["use_ema"] else None
        scaler = dev.grad_scaler()
        nw = max(round(s["warmup_epochs"] * nb), 100) if s["warmup_epochs"] > 0 else 0
        total_iters = epochs * nb if epochs is not None else None
        budget_s = minutes * 60 if minutes is not None else None

        start_epoch, ni, last_opt, elapsed_before, train_s_before = 0, 0, -1, 0.0, 0.0
        history: list[dict[str, Any]] = []
        best_fitness = -1.0
        if ckpt is not None:
            try:
                model.load_state_dict(ckpt["model"])
                if ema is not None and ckpt.get("ema") is not None:
                    ema.ema.load_state_dict(ckpt["ema"])
                    ema.updates = int(ckpt["ema_updates"])
            except RuntimeError as exc:
                raise ConfigError(f"{last_path}: checkpoint does not fit this model ({str(exc).splitlines()[0]})") from exc
            opt.load_state_dict(ckpt["optimizer"])  # moves the state onto the parameters' device
            match_state_layout(opt)
            if dev.needs_scaler and ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            start_epoch, ni, last_opt = int(ckpt["epoch"]) + 1, int(ckpt["iteration"]), int(ckpt["last_opt_step"])
            elapsed_before, train_s_before = float(ckpt["elapsed_s"]), float(ckpt["train_s"])
            history = [dict(r) for r in ckpt["history"]]
            best_fitness = float(ckpt["best_fitness"])
            set_rng_state(ckpt["rng"])

        writer = RunWriter(run_dir, "train", threads=torch.get_num_threads(), device=dev.name)
        t0 = time.perf_counter() - elapsed_before

        def elapsed() -> float:
            return time.perf_counter() - t0

        def progress_at(it: int) -> float:
            if total_iters is not None:
                return it / total_iters
            return elapsed() / budget_s  # type: ignore[operator]

        stopped_by = "epochs" if epochs is not None else "minutes"
        done = budget_s is not None and elapsed() >= budget_s
        train_s = train_s_before
        reporter = as_progress(progress)
        bar_total = total_iters if total_iters is not None else budget_s
        final: dict[str, Any] | None = None
        epoch = start_epoch
        with reporter.task("train", bar_total, show=("description", "bar", "percent", "elapsed", "remaining"),
                           transient=False) as bar:
            while not done and (epochs is None or epoch < epochs):
                model.train()
                perm = epoch_order(n, seed, epoch)
                sums = torch.zeros(3, device=dev.torch_device)
                n_iter = 0
                partial = False
                t_epoch = time.perf_counter()
                for bi, loaded in enumerate(loader.epoch(perm)):
                    if not len(loaded):
                        continue  # every image of this batch was unreadable (warned and counted)
                    imgs, targets = scale_and_augment(loaded, epoch, bi, seed, aug)
                    imgs, targets = dev.batch(imgs), targets.to(dev.torch_device)
                    p = progress_at(ni)
                    factor = lr_factor(p, s["lrf"], s["lr_schedule"])
                    warm = min(1.0, max(ni / nw, p / 0.2)) if nw else 1.0
                    accumulate_now = max(1, round(1 + warm * (nbs / batch - 1))) if warm < 1 else accumulate
                    for j, gp in enumerate(opt.param_groups):
                        target = gp["initial_lr"] * factor
                        if warm < 1:
                            lo = 0.1 if j == 2 else 0.0
                            gp["lr"] = lo + warm * (target - lo)
                            if "momentum" in gp:
                                gp["momentum"] = 0.8 + warm * (s["momentum"] - 0.8)
                            elif "betas" in gp:
                                gp["betas"] = (0.8 + warm * (s["momentum"] - 0.8), gp["betas"][1])
                        else:
                            gp["lr"] = target
                            if "momentum" in gp:
                                gp["momentum"] = s["momentum"]
                    with dev.autocast():
                        preds = model(imgs)
                        loss, items = compute_loss(preds, targets)
                    scaler.scale(loss).backward()
                    if ni - last_opt >= accumulate_now:
                        _step(model, params, opt, ema, s["grad_clip"], scaler)
                        last_opt = ni
                    ni += 1
                    n_iter += 1
                    sums += items
                    done_now = ni if total_iters is not None else elapsed()
                    _show_losses(bar, epoch, epochs, sums / n_iter, done_now, budget_s)
                    if budget_s is not None and elapsed() >= budget_s:
                        done, partial = True, bi < nb - 1
                        break
                if last_opt < ni - 1:  # flush accumulated gradients so an epoch boundary is a clean state
                    _step(model, params, opt, ema, s["grad_clip"], scaler)
                    last_opt = ni - 1
                train_s += time.perf_counter() - t_epoch
                eval_model = ema.ema if ema is not None else model
                is_last = done or (epochs is not None and epoch == epochs - 1)
                row: dict[str, Any] = {"epoch": epoch, "iterations": n_iter, "images": min(n_iter * batch, n),
                                       "box_loss": float(sums[0] / n_iter), "obj_loss": float(sums[1] / n_iter),
                                       "cls_loss": float(sums[2] / n_iter), "lr": float(opt.param_groups[0]["lr"]),
                                       "map50": float("nan"), "map": float("nan"), "train_s": train_s,
                                       "elapsed_s": 0.0, "partial": partial}
                if is_last or (epoch + 1) % max(1, s["val_every"]) == 0:
                    m = evaluate(eval_model, ds, imgsz=imgsz, max_images=None if is_last else s["val_max_images"],
                                 amp=dev.amp)
                    row["map50"], row["map"] = m["map50"], m["map"]
                    final = m if is_last else None
                row["elapsed_s"] = elapsed()
                history.append(row)
                fitness = 0.1 * row["map50"] + 0.9 * row["map"] if not math.isnan(row["map"]) else -1.0
                state = {"epoch": epoch, "iteration": ni, "last_opt_step": last_opt, "elapsed_s": elapsed(),
                         "train_s": train_s, "model": model.state_dict(),
                         "ema": ema.ema.state_dict() if ema is not None else None,
                         "ema_updates": ema.updates if ema is not None else 0, "optimizer": opt.state_dict(),
                         "history": history, "best_fitness": max(best_fitness, fitness), "settings": settings,
                         "nc": ds.nc, "names": list(ds.names), "rng": rng_state(), "device": dev.name,
                         "scaler": scaler.state_dict() if dev.needs_scaler else None}
                save_checkpoint(last_path, state)
                if fitness > best_fitness:
                    best_fitness = fitness
                    save_checkpoint(best_path, state)
                writer.save_table(pd.DataFrame(history, columns=HISTORY_COLUMNS), "metrics")
                reporter.log(f"epoch {row['epoch'] + 1}: mAP50 {row['map50']:.4f} mAP {row['map']:.4f} "
                             f"({row['elapsed_s']:.0f} s)")
                if on_epoch_end is not None and on_epoch_end(epoch, dict(row)):
                    stopped_by = "callback"
                    break
                epoch += 1

        eval_model = ema.ema if ema is not None else model
        if final is None:
            final = evaluate(eval_model, ds, imgsz=imgsz, amp=dev.amp)
        hist = pd.DataFrame(history, columns=HISTORY_COLUMNS)
        images_seen = int(hist["images"].sum()) if len(hist) else 0
        per_class = final.pop("per_class")
        writer.save_table(per_class, "per_class")
        wall_s = time.perf_counter() - t_start
        summary = {"map50": final["map50"], "map": final["map"], "map75": final["map75"], "epochs": len(history),
                   "stopped_by": stopped_by, "images_seen": images_seen, "train_s": train_s,
                   "images_per_s": images_seen / train_s if train_s > 0 else float("nan"), "wall_s": wall_s,
                   "data": ds.summary(), "settings": settings, "params": sum(p.numel() for p in model.parameters()),
                   "device": dev.name, "amp": dev.amp}
        (run_dir / "final.json").write_text(json.dumps(summary, indent=2, default=str))
        writer.write_meta(model=_describe(cfg_or_model), data=settings["data"], imgsz=imgsz, batch=batch,
                          train_device=dev.name, amp=dev.amp, **ds.skip_counts())
        return TrainResult(name=run_dir.name, run_dir=run_dir, last=last_path,
                           best=best_path if best_path.exists() else None, epochs=len(history), map50=final["map50"],
                           map=final["map"], metrics={**final, "per_class": per_class}, history=hist,
                           per_class=per_class, wall_s=wall_s, train_s=train_s, images_seen=images_seen,
                           images_per_s=summary["images_per_s"], stopped_by=stopped_by, model=eval_model,
                           device=dev.name, amp=dev.amp)


def _step(model: nn.Module, params: list[torch.Tensor], opt: torch.optim.Optimizer, ema: ModelEMA | None,
          clip: float, scaler: torch.amp.GradScaler) -> None:
    """One optimizer step through ``scaler`` (a pass-through when disabled): unscale, clip, step, EMA."""
    scaler.unscale_(opt)
    if clip > 0:
        clip_gradients(params, clip)
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=False)
    if ema is not None:
        ema.update(model)


def match_state_layout(opt: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor (momenta) its parameter's memory layout.

    Checkpoints hold contiguous tensors; a channels-last model's parameters are not. The fused optimizer
    kernels walk the parameter and its state as flat memory, so after a resume they must match element for
    element (torch's other kernels follow strides and only get slower)."""
    for p, state in opt.state.items():
        for k, v in state.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                state[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def clip_gradients(params: list[torch.Tensor], max_norm: float) -> None:
    """``clip_grad_norm_``, without its pass that multiplies every gradient by 1 when none needs clipping.

    The coefficient is torch's own (``max_norm / (norm + 1e-6)``, capped at 1); on the CPU a factor of 1 is
    skipped, with bitwise the same result; on a GPU the check would cost a synchronisation, so it always
    multiplies."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    if norm.device.type != "cpu" or max_norm / (norm + 1e-6) < 1:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)


def _describe(cfg_or_model: Any) -> str:
    if isinstance(cfg_or_model, nn.Module):
        return type(cfg_or_model).__name__
    if isinstance(cfg_or_model, dict):
        return "dict config"
    return str(cfg_or_model)


def _show_losses(bar: ProgressTask, epoch: int, epochs: int | None, losses: torch.Tensor, done: float,
                 budget_s: float | None) -> None:
    """Move the bar to ``done`` (iterations, or seconds capped at the budget) with the mean losses shown."""
    ep = f"{epoch + 1}/{epochs}" if epochs else f"{epoch + 1}"
    completed = done if budget_s is None else min(done, budget_s)
    bar.set(completed=completed,
            description=f"epoch {ep} box {losses[0]:.4f} obj {losses[1]:.4f} cls {losses[2]:.4f}")
