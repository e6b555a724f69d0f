"""Where the time of one model goes: per-YAML-layer latency and a per-op-category breakdown.

- ``profile_layers``: each YAML layer (``model.layers[i]``, or each child of a plain ``nn.Module``) is timed
  on its real input, captured with one forward pass (multi-input layers such as Concat and Detect get their
  list). All layers and the whole model are measured in the same interleaved rounds, so the whole-model
  estimate sits beside the per-layer ones and ``sum / end-to-end`` is stated: layers timed alone run with
  warmer caches and without the framework's per-layer glue, so the sum is not the end-to-end time
  (measurements: benchmarks/README.md#block-sum-vs-end-to-end).
- ``profile_ops``: ``torch.profiler`` over a few inferences; the time of every aten op the model code
  called (inclusive of the ops it dispatches to, so ``empty``/``copy_`` inside a conv count as the conv)
  is grouped by the categories of ``latlab.profiling.categories`` (convolution by geometry: dense,
  pointwise, depthwise, group) and by the coarse groups of ShuffleNetV2's Fig. 2 (conv, element-wise,
  data movement, other). The profiler adds overhead per op, so the profiled total is stated next to the
  un-profiled end-to-end estimate.
- ``profile_model``: the one call behind ``latlab profile``: build a config, time it end to end, and
  optionally both breakdowns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from latlab.errors import ConfigError, DeviceError
from latlab.inputs import example_input as base_example_input
from latlab.ops.model import check_imgsz, default_imgsz
from latlab.ops.sources import OnnxGraph, ResolvedModel, resolve_model
from latlab.profiling.backends import call_with, get_runner, map_tensors, require_per_layer
from latlab.profiling.categories import conv_category, is_conv_op, op_category
from latlab.profiling.compare import Comparison, compare, run_interleaved
from latlab.profiling.timer import DEFAULT_ESTIMATOR, Measurement, check_estimator

E2E = "(end-to-end)"

# ShuffleNetV2 Fig. 2 groups (BatchNorm at inference is a per-channel scale and shift: element-wise).
FIG2_GROUP = {
    "conv": "conv", "pointwise": "conv", "depthwise": "conv", "group_conv": "conv", "linear": "conv",
    "elementwise": "elementwise", "norm": "elementwise",
    "data_movement": "data_movement",
    "pooling": "other", "other": "other",
}


@dataclass
class CapturedLayer:
    """One layer with the arguments it received in a real forward pass."""

    index: int
    path: str
    module: nn.Module
    args: tuple[Any, ...]
    type: str
    from_: Any = -1
    n: int = 1


def _layers_of(model: nn.Module) -> list[tuple[int, str, nn.Module, str, Any, int]]:
    """(index, module path, module, YAML type, from, n) for each layer of a LatlabModel or plain module."""
    layers = getattr(model, "layers", None)
    info = getattr(model, "layer_info", None)
    if isinstance(layers, nn.ModuleList):
        out = []
        for i, m in enumerate(layers):
            li = info[i] if info is not None and i < len(info) else None
            out.append((i, f"layers.{i}", m, li.module if li else type(m).__name__,
                        li.from_ if li else -1, li.n if li else 1))
        return out
    return [(i, name, m, type(m).__name__, -1, 1) for i, (name, m) in enumerate(model.named_children())]


def capture_layer_inputs(model: nn.Module, example_input: Any) -> list[CapturedLayer]:
    """Run one eval-mode forward pass and record (a clone of) what each layer was called with.

    Hooks are removed afterwards and the model's train/eval mode is restored.
    """
    entries = _layers_of(model)
    if not entries:
        raise ConfigError(f"{type(model).__name__} has no layers (no .layers ModuleList and no children) "
                          "to time one by one")
    captured: dict[int, tuple[Any, ...]] = {}

    def hook_for(i: int):
        def hook(_mod: nn.Module, args: tuple[Any, ...]) -> None:
            if i not in captured:
                captured[i] = map_tensors(args, lambda t: t.detach().clone())
        return hook

    was_training = model.training
    handles = [m.register_forward_pre_hook(hook_for(i)) for i, _, m, *_ in entries]
    try:
        model.eval()
        with torch.inference_mode():
            call_with(model, example_input)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return [CapturedLayer(i, path, m, captured[i], typ, f, n)
            for i, path, m, typ, f, n in entries if i in captured]


def _shape_str(args: Any) -> str:
    shapes = [list(t.shape) for t in _flat(args)]
    return "x".join(str(s) for s in shapes[0]) if len(shapes) == 1 else str(shapes)


def _flat(obj: Any) -> list[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for o in obj for t in _flat(o)]
    return []


@dataclass
class LayerTiming:
    """Per-layer latency table plus the whole-model estimate measured in the same rounds.

    ``table`` columns: ``layer`` (YAML index), ``module`` (path, e.g. ``layers.3``), ``type`` (YAML module
    name), ``from_``, ``repeats`` (the YAML ``n``), ``params``, ``in_shapes``, the shared measurement
    columns (``n`` = samples), ``estimator``, ``estimate_ms``, ``ci_low_ms``, ``ci_high_ms``, ``share``
    (of the per-layer sum) and ``of_e2e`` (estimate / end-to-end estimate).
    """

    table: pd.DataFrame
    end_to_end: Measurement
    estimator: str
    sum_ms: float
    ratio: float
    rounds: int
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"sum of {len(self.table)} layers {self.sum_ms:.3f} ms vs end-to-end "
                f"{self.end_to_end.estimate_ms:.3f} ms ({self.estimator}): sum / end-to-end = {self.ratio:.2f}")


def profile_layers(model: nn.Module, example_input: Any, *, estimator: str = DEFAULT_ESTIMATOR,
                   threads: int = 1, device: str = "cpu", channels_last: bool = False,
                   rounds: int | None = None, budget_s: float | None = 30.0, progress: bool = True,
                   backend: str = "torch", **kwargs: Any) -> LayerTiming:
    """Time every layer on its captured input and the whole model, interleaved (``backend`` must time
    single torch modules: its spec's ``per_layer``)."""
    require_per_layer(backend)
    layers = capture_layer_inputs(model, example_input)
    models: dict[str, Any] = {E2E: model}
    inputs: dict[str, Any] = {E2E: example_input}
    for cl in layers:
        models[cl.path] = cl.module
        inputs[cl.path] = cl.args
    run = run_interleaved(models, inputs, rounds=rounds, budget_s=budget_s, estimator=estimator,
                          backend=backend, device=device, threads=threads, channels_last=channels_last,
                          progress=progress, **kwargs)
    e2e = run.measurements[E2E]
    rows = []
    for cl in layers:
        m = run.measurements[cl.path]
        rows.append({"layer": cl.index, "module": cl.path, "type": cl.type, "from_": str(cl.from_),
                     "repeats": cl.n, "params": sum(p.numel() for p in cl.module.parameters()),
                     "in_shapes": _shape_str(cl.args), **m.to_row()})
    df = pd.DataFrame(rows)
    total = float(df["estimate_ms"].sum())
    df["share"] = df["estimate_ms"] / total
    df["of_e2e"] = df["estimate_ms"] / e2e.estimate_ms
    return LayerTiming(df, e2e, estimator, total, total / e2e.estimate_ms, run.rounds, run.warnings)


@dataclass
class OpBreakdown:
    """torch.profiler time per op and per category, per inference, with the end-to-end estimate beside it.

    ``by_op`` columns: ``op`` (aten op the model code called), ``category``, ``group`` (Fig. 2 group),
    ``calls`` per inference and ``time_ms`` (median over the profiled inferences of the time per inference,
    inclusive of the ops it dispatched to), ``share``.
    ``by_category``: ``category``, ``group``, ``time_ms``, ``share``, ``calls``, ``ops`` (top ops).
    ``by_group``: ``group``, ``time_ms``, ``share``.
    """

    by_op: pd.DataFrame
    by_category: pd.DataFrame
    by_group: pd.DataFrame
    end_to_end: Measurement
    profiled_ms: float
    ratio: float
    iters: int

    def summary(self) -> str:
        return (f"profiled op time {self.profiled_ms:.3f} ms per inference vs end-to-end "
                f"{self.end_to_end.estimate_ms:.3f} ms ({self.end_to_end.estimator}, without the profiler): "
                f"ratio {self.ratio:.2f}")


def _event_category(name: str, shapes: list[list[int]]) -> str:
    if is_conv_op(name) and len(shapes) >= 2 and len(shapes[0]) >= 3 and len(shapes[1]) >= 3:
        in_ch, w = shapes[0][1], shapes[1]
        groups = max(1, in_ch // max(1, w[1]))
        kernel = 1
        for k in w[2:]:
            kernel *= k
        return conv_category(in_ch, groups, kernel, transposed="transpose" in name)
    return op_category(name)


def _root_events(events: list[Any]) -> list[Any]:
    """Outermost aten events: the ops the model's Python code called (children are inside them)."""
    return [e for e in events if e.name.startswith("aten::") and
            (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::"))]


def profile_ops(model: nn.Module, example_input: Any, *, iters: int = 20, warmup: int = 3, threads: int = 1,
                channels_last: bool = False, estimator: str = DEFAULT_ESTIMATOR,
                end_to_end: Measurement | None = None, budget_s: float | None = 10.0,
                progress: bool = True) -> OpBreakdown:
    """Per-op-category time from ``torch.profiler`` (CPU, torch backend) over ``iters`` inferences.

    Each (op, category) gets the median over the profiled inferences of its time in one inference, so a
    load spike during one inference does not skew the shares; ``profiled_ms`` is the sum of those medians.
    ``end_to_end`` reuses an existing whole-model measurement; otherwise one is taken (without profiler).
    """
    if end_to_end is None:
        end_to_end = run_interleaved({E2E: model}, example_input, budget_s=budget_s, estimator=estimator,
                                     threads=threads, channels_last=channels_last,
                                     progress=progress).measurements[E2E]
    runner = get_runner("torch", "cpu", threads=threads, channels_last=channels_last)
    fn = runner.prepare(model, example_input)
    with runner.session():
        for _ in range(warmup):
            fn()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for i in range(iters):
                with record_function(f"{ITER_MARK}{i}"):
                    fn()
    calls: dict[tuple[str, str], int] = {}
    times: dict[tuple[str, str], list[float]] = {}
    for e in _root_events(list(prof.events())):
        it = _iteration_of(e)
        if it is None:
            continue
        key = (e.name.removeprefix("aten::"), _event_category(e.name, list(e.input_shapes or [])))
        calls[key] = calls.get(key, 0) + 1
        times.setdefault(key, [0.0] * iters)[it] += e.cpu_time_total / 1e3
    by_op = pd.DataFrame([{"op": op, "category": cat, "group": FIG2_GROUP.get(cat, "other"),
                           "calls": calls[(op, cat)] / iters, "time_ms": float(np.median(times[(op, cat)]))}
                          for (op, cat) in calls])
    total = float(by_op["time_ms"].sum())
    by_op["share"] = by_op["time_ms"] / total
    by_op = by_op.sort_values("time_ms", ascending=False, ignore_index=True)
    by_cat = (by_op.groupby(["category", "group"], as_index=False)
              .agg(time_ms=("time_ms", "sum"), calls=("calls", "sum"),
                   ops=("op", lambda s: ", ".join(list(dict.fromkeys(s))[:4]))))
    by_cat["share"] = by_cat["time_ms"] / total
    by_cat = by_cat.sort_values("time_ms", ascending=False, ignore_index=True)
    by_group = by_op.groupby("group", as_index=False).agg(time_ms=("time_ms", "sum"))
    by_group["share"] = by_group["time_ms"] / total
    by_group = by_group.sort_values("time_ms", ascending=False, ignore_index=True)
    return OpBreakdown(by_op, by_cat[["category", "group", "time_ms", "share", "calls", "ops"]], by_group,
                       end_to_end, total, total / end_to_end.estimate_ms, iters)


ITER_MARK = "latlab::inference#"


def _iteration_of(event: Any) -> int | None:
    """Index of the profiled inference an event belongs to (from the record_function marker above it)."""
    parent = event.cpu_parent
    while parent is not None:
        if parent.name.startswith(ITER_MARK):
            return int(parent.name[len(ITER_MARK):])
        parent = parent.cpu_parent
    return None


@dataclass
class ProfileResult:
    """What ``latlab profile`` reports: the end-to-end row and the optional breakdowns."""

    name: str
    imgsz: int
    latency: pd.DataFrame
    end_to_end: Measurement
    layers: LayerTiming | None = None
    ops: OpBreakdown | None = None
    warnings: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table by the file name it is saved under."""
        out = {"latency": self.latency}
        if self.layers is not None:
            out["layers"] = self.layers.table
        if self.ops is not None:
            out["ops"] = self.ops.by_op
            out["ops_by_category"] = self.ops.by_category
            out["ops_by_group"] = self.ops.by_group
        return out

    def meta(self) -> dict[str, Any]:
        m: dict[str, Any] = {"model": self.name, "imgsz": self.imgsz, "estimator": self.end_to_end.estimator,
                             "backend": self.end_to_end.backend, "device": self.end_to_end.device,
                             "threads": self.end_to_end.threads, "warnings": self.warnings}
        if self.layers is not None:
            m["layers_sum_ms"] = self.layers.sum_ms
            m["layers_sum_over_e2e"] = self.layers.ratio
        if self.ops is not None:
            m["ops_profiled_ms"] = self.ops.profiled_ms
            m["ops_profiled_over_e2e"] = self.ops.ratio
        return m


def example_input(model: nn.Module, imgsz: int, name: str, batch: int = 1) -> torch.Tensor:
    """A random ``batch×C×imgsz×imgsz`` input for ``model`` (C from its ``in_channels``, default 3), after
    checking that ``imgsz`` suits it (``ConfigError`` naming ``name`` otherwise)."""
    check_imgsz(model, imgsz, name)
    return base_example_input(imgsz, batch, getattr(model, "in_channels", 3), fill="randn")


def timing_backend(backend: str, *names: ResolvedModel) -> tuple[str, list[str]]:
    """The backend to time with: ONNX Runtime when a model is an ONNX file and ``torch`` was asked for
    (an ONNX graph runs nowhere else), with a note saying so."""
    onnx = [r.name for r in names if r.is_onnx]
    if not onnx or backend != "torch":
        return backend, []
    return "onnxruntime", [f"{', '.join(onnx)} is an ONNX graph: timed under --backend onnxruntime"]


def model_input(r: ResolvedModel, imgsz: int | None, batch: int = 1) -> tuple[int, torch.Tensor]:
    """``(size, input)`` for a resolved model: an ONNX graph's own input shape, else ``example_input``."""
    if isinstance(r.model, OnnxGraph):
        shape = r.model.input_shape(imgsz)
        return shape[-1], torch.randn(batch, *shape[1:])
    size = default_imgsz(r.model) if imgsz is None else imgsz
    return size, example_input(r.model, size, r.name, batch)


def profile_model(cfg: Any, *, imgsz: int | None = None, device: str = "cpu", backend: str = "torch",
                  threads: int = 1, per_layer: bool = False, ops: bool = False,
                  estimator: str = DEFAULT_ESTIMATOR, budget_s: float = 10.0, channels_last: bool = False,
                  batch: int = 1, progress: bool = True) -> ProfileResult:
    """Load ``cfg`` (any form of :mod:`latlab.ops.sources`, a dict or an nn.Module) and measure it; see
    ``latlab profile``. An ONNX file is timed under ONNX Runtime and has no per-layer or per-op breakdown."""
    check_estimator(estimator)
    resolved = resolve_model(cfg)
    backend, onnx_notes = timing_backend(backend, resolved)
    if per_layer or ops:
        if resolved.is_onnx:
            raise ConfigError(f"'{resolved.name}' is an ONNX graph: --per-layer and --ops need a PyTorch model")
        require_per_layer(backend)
    if ops and device != "cpu":
        raise DeviceError("--ops uses torch.profiler's CPU times; run it with --device cpu")
    get_runner(backend, device, threads=threads)  # fail early on a missing GPU or ONNX Runtime

    model, name = resolved.model, resolved.name
    size, x = model_input(resolved, imgsz, batch)
    layers = op_breakdown = None
    if per_layer:
        assert isinstance(model, nn.Module)
        layers = profile_layers(model, x, estimator=estimator, threads=threads, device=device, backend=backend,
                                channels_last=channels_last, budget_s=budget_s, progress=progress)
        e2e, notes = layers.end_to_end, layers.warnings
    else:
        run = run_interleaved({E2E: model}, x, budget_s=budget_s, estimator=estimator, backend=backend,
                              device=device, threads=threads, channels_last=channels_last, progress=progress)
        e2e, notes = run.measurements[E2E], run.warnings
    if ops:
        assert isinstance(model, nn.Module)
        op_breakdown = profile_ops(model, x, threads=threads, channels_last=channels_last, end_to_end=e2e)
    latency = pd.DataFrame([{"model": name, "imgsz": size, "batch": batch, **e2e.to_row()}])
    return ProfileResult(name, size, latency, e2e, layers, op_breakdown,
                         list(dict.fromkeys(onnx_notes + e2e.warnings + notes)))


def compare_models(cfg_a: Any, cfg_b: Any, *, imgsz: int | None = None, device: str = "cpu",
                   backend: str = "torch", threads: int = 1, estimator: str = DEFAULT_ESTIMATOR,
                   budget_s: float = 10.0, channels_last: bool = False, progress: bool = True) -> Comparison:
    """Load two models (any form of :mod:`latlab.ops.sources`, dicts or modules) and time them interleaved
    on one input size; see ``latlab compare``. ``imgsz`` defaults to the first model's default size and must
    suit both. When either is an ONNX file both are timed under ONNX Runtime."""
    check_estimator(estimator)
    ra, rb = resolve_model(cfg_a), resolve_model(cfg_b)
    backend, _ = timing_backend(backend, ra, rb)
    get_runner(backend, device, threads=threads)

    name_a, name_b = ra.name, rb.name
    if name_a == name_b:
        name_a, name_b = f"A:{name_a}", f"B:{name_b}"
    size, x = model_input(ra, imgsz)
    _, xb = model_input(rb, imgsz or size)
    if x.shape != xb.shape:
        raise ConfigError(f"{name_a} takes input {tuple(x.shape)}, {name_b} {tuple(xb.shape)}: "
                          "compare needs models with the same input")
    return compare(ra.model, rb.model, x, names=(name_a, name_b), budget_s=budget_s, estimator=estimator,
                   backend=backend, device=device, threads=threads, channels_last=channels_last, progress=progress)
