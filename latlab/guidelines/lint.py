"""Guideline linter: which layers of a built model go against ShuffleNet V2's G1-G4, and by how much.

``lint_model(cfg)`` builds a config (zoo name, YAML path, dict, or an ``nn.Module``), counts it with
``latlab.profiling.counter`` and traces its dataflow once, then reports per YAML layer (``layers.<i>``; for
a plain module, per top-level child):

- **G1** (equal channel width minimises MAC): every dense 1×1 conv's ``max(c_in, c_out) / min(c_in, c_out)``
  and its MAC excess over equal widths at the same FLOPs, in bytes: with ``c = √(c_in·c_out)`` (same
  multiply-adds), ``excess = elem_bytes · batch · (hw_in·c_in + hw_out·c_out − (hw_in + hw_out)·c)``
  (weights cancel). With equal spatial sizes this is ``hw·(√c_in − √c_out)²·elem_bytes`` ≥ 0; for a
  strided 1×1 conv it can be negative (equal widths are then not the minimum). Flag: ratio ≥ ``g1_ratio``.
- **G2** (excessive group convolution): group convs (``1 < groups < c_in``) and their group counts.
  Depthwise convs are listed separately (the paper counts them as element-wise, G4). Flag: any group conv
  with ``groups ≥ g2_groups``.
- **G3** (fragmentation): the block's conv and pooling ops ("fragments", the paper's definition) on the
  traced dataflow graph: ``fragments`` (count), ``series_depth`` (longest chain of fragments) and
  ``parallel_width`` (the largest set of fragments none of which depends on another: Dilworth's theorem,
  computed as fragments − a maximum matching of the reachability relation). Flag: parallel_width ≥
  ``g3_parallel``. Series fragments are reported, not flagged: a YAML row that repeats a unit ``n`` times
  (a ShuffleNet stage, a C3's bottlenecks) is a long chain by design, and the paper's slowdown is per block.
- **G4** (element-wise ops are non-negligible): the share of element-wise work (activations, add/mul and
  unfused BatchNorm, i.e. categories ``elementwise`` and ``norm``) in the layer's counted flops and
  mac_bytes; depthwise convs' mac_bytes share beside it. Flag: element-wise mac_bytes share ≥ ``g4_mac_share``.
  The model is linted as built: BatchNorm that a deployment would fold into the conv still counts here.

With ``measure=True`` each layer is timed on its real input (``latlab.profiling.layerwise.profile_layers``,
interleaved rounds) and its latency and share sit beside the counts.

Columns of ``LintResult.layers``: ``layer``, ``module``, ``type``, ``params``, ``madds``, ``flops``,
``mac_bytes``, ``n_convs``, ``g1_max_ratio``, ``g1_mac_excess_bytes``, ``g1_flag``, ``groups`` (group counts
of its group convs, e.g. ``"4"``), ``n_depthwise``, ``g2_flag``, ``fragments``, ``series_depth``,
``parallel_width``, ``g3_flag``, ``ew_flops_share``, ``ew_mac_share``, ``dw_mac_share``, ``g4_flag``,
``findings`` (short text) and, when measured, ``estimate_ms``, ``ci_low_ms``, ``ci_high_ms``, ``median_ms``,
``latency_share``. ``LintResult.convs`` has one row per convolution; ``LintResult.findings`` one per flag.
"""

from __future__ import annotations

import json
import math
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

from latlab.errors import ConfigError
from latlab.inputs import example_input
from latlab.ops.model import check_imgsz, default_imgsz
from latlab.ops.sources import as_model
from latlab.profiling.backends import flatten_tensors
from latlab.profiling.categories import base_name, is_conv_op, op_category
from latlab.profiling.counter import CountResult, count_model
from latlab.profiling.dispatch import EagerDispatchMode
from latlab.profiling.layerwise import profile_layers

CONV_CATEGORIES = ("conv", "pointwise", "depthwise", "group_conv")
ELEMENTWISE_CATEGORIES = ("elementwise", "norm")
LAYER_COLUMNS = ("layer", "module", "type", "params", "madds", "flops", "mac_bytes", "n_convs", "g1_max_ratio",
                 "g1_mac_excess_bytes", "g1_flag", "groups", "n_depthwise", "g2_flag", "fragments",
                 "series_depth", "parallel_width", "g3_flag", "ew_flops_share", "ew_mac_share", "dw_mac_share",
                 "g4_flag", "findings")
CONV_COLUMNS = ("layer", "module", "c_in", "c_out", "kernel", "stride_hw", "groups", "category", "ratio",
                "mac_excess_bytes", "madds", "mac_bytes")


@dataclass(frozen=True)
class LintThresholds:
    """When a layer is flagged. The paper tests c2/c1 up to 12, g up to 8, up to 4 fragments.

    ``g1_ratio`` 6: Table 1's 1:6 row is where both platforms slow clearly (ARM −9 %, GPU −41 %); a
    ResNet bottleneck's 4:1 reduction is not flagged by default.
    """

    g1_ratio: float = 6.0
    g2_groups: int = 2
    g3_parallel: int = 2
    g4_mac_share: float = 0.5


@dataclass
class LintResult:
    """Per-layer guideline report of one model (see the module docstring for the columns)."""

    name: str
    imgsz: int
    layers: pd.DataFrame
    convs: pd.DataFrame
    findings: pd.DataFrame
    totals: dict[str, float]
    thresholds: LintThresholds
    measured: bool = False
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        counts = self.findings["guideline"].value_counts().to_dict() if len(self.findings) else {}
        flagged = ", ".join(f"{g}: {counts.get(g, 0)} layer(s)" for g in ("G1", "G2", "G3", "G4"))
        return (f"{self.name} @ {self.imgsz}: {flagged}; element-wise ops are "
                f"{self.totals['ew_flops_share']:.1%} of flops and {self.totals['ew_mac_share']:.1%} of mac_bytes")

    def meta(self) -> dict[str, Any]:
        return {"model": self.name, "imgsz": self.imgsz, "thresholds": asdict(self.thresholds),
                "totals": self.totals, "measured": self.measured, "warnings": self.warnings}

    def to_json(self) -> dict[str, Any]:
        return {"meta": self.meta(), "layers": _records(self.layers),
                "findings": _records(self.findings), "convs": _records(self.convs)}


# ------------------------------------------------------------------------------- layer naming
def _layer_key(path: str) -> str:
    """``layers.3.cv1.conv`` → ``layers.3``; ``stem.0`` → ``stem``; ``""`` (root code) → ``""``."""
    parts = path.split(".")
    if parts[0] == "layers" and len(parts) > 1 and parts[1].isdigit():
        return f"layers.{parts[1]}"
    return parts[0]


def _layer_list(model: nn.Module) -> list[tuple[int, str, str]]:
    """(index, key, type) per layer: YAML rows of a LatlabModel, else the top-level children."""
    layers = getattr(model, "layers", None)
    info = getattr(model, "layer_info", None)
    if isinstance(layers, nn.ModuleList):
        out = []
        for i, m in enumerate(layers):
            typ = info[i].module if info is not None and i < len(info) else type(m).__name__
            out.append((i, f"layers.{i}", typ))
        return out
    return [(i, name, type(m).__name__) for i, (name, m) in enumerate(model.named_children())]


# ------------------------------------------------------------------------------ dataflow trace
@dataclass
class _Node:
    key: str
    fragment: bool
    parents: set[int]


class _GraphMode(EagerDispatchMode):
    """Records every dispatched op with the ops that produced its tensor inputs (tensor identity).

    A tensor's entry is dropped when the tensor is freed (``weakref.finalize``), so a later tensor that
    reuses its ``id`` is not mistaken for it, and no activation is kept alive by the trace.
    """

    def __init__(self, stack: list[str]):
        super().__init__()
        self.stack = stack
        self.nodes: list[_Node] = []
        self.producer: dict[int, int] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        ins = flatten_tensors((args, kwargs))
        parents = {self.producer[id(t)] for t in ins if id(t) in self.producer}
        base = base_name(func._overloadpacket.__name__)
        fragment = is_conv_op(base) or op_category(base) == "pooling"
        idx = len(self.nodes)
        self.nodes.append(_Node(self.stack[-1], fragment, parents))
        for t in flatten_tensors(out):
            if id(t) not in self.producer:
                weakref.finalize(t, self.producer.pop, id(t), None)
            self.producer[id(t)] = idx
        return out


@contextmanager
def _module_stack(model: nn.Module) -> Iterator[list[str]]:
    """Global forward hooks keeping the layer key of the innermost running module (removed on exit)."""
    paths = {id(m): _layer_key(p) for p, m in model.named_modules()}
    stack = [""]

    def pre(m: nn.Module, inputs: Any) -> None:
        stack.append(paths.get(id(m), stack[-1]))

    def post(m: nn.Module, inputs: Any, output: Any) -> None:
        if len(stack) > 1:
            stack.pop()

    handles = [register_module_forward_pre_hook(pre), register_module_forward_hook(post, always_call=True)]
    try:
        yield stack
    finally:
        for h in handles:
            h.remove()


def trace_fragments(model: nn.Module, example_input: torch.Tensor) -> dict[str, dict[str, int]]:
    """Per layer key: ``fragments``, ``series_depth``, ``parallel_width`` of its conv/pooling ops."""
    was_training = model.training
    model.eval()
    try:
        with _module_stack(model) as stack, torch.no_grad():
            mode = _GraphMode(stack)
            with mode:
                model(example_input)
    finally:
        model.train(was_training)
    return fragment_stats(mode.nodes)


def fragment_stats(nodes: list[_Node]) -> dict[str, dict[str, int]]:
    """Fragments, longest chain and largest antichain of the fragment ops of each layer.

    ``nodes`` are in execution (topological) order; ``anc[i]`` is a bitset of the fragment ops that node
    ``i`` depends on, through any op.
    """
    anc: list[int] = []
    for node in nodes:
        bits = 0
        for p in node.parents:
            bits |= anc[p] | ((1 << p) if nodes[p].fragment else 0)
        anc.append(bits)
    by_layer: dict[str, list[int]] = {}
    for i, node in enumerate(nodes):
        if node.fragment:
            by_layer.setdefault(node.key, []).append(i)
    out = {}
    for key, frags in by_layer.items():
        depth: dict[int, int] = {}
        for i in frags:
            depth[i] = 1 + max((depth[j] for j in frags if j < i and anc[i] >> j & 1), default=0)
        # comparability: j → i when fragment i depends on fragment j (same layer)
        succ = {j: [i for i in frags if i > j and anc[i] >> j & 1] for j in frags}
        out[key] = {"fragments": len(frags), "series_depth": max(depth.values()),
                    "parallel_width": len(frags) - _max_matching(frags, succ)}
    return out


def _max_matching(left: list[int], succ: dict[int, list[int]]) -> int:
    """Maximum bipartite matching (Kuhn's augmenting paths) of the relation ``succ``."""
    match: dict[int, int] = {}

    def augment(u: int, seen: set[int]) -> bool:
        for v in succ[u]:
            if v in seen:
                continue
            seen.add(v)
            if v not in match or augment(match[v], seen):
                match[v] = u
                return True
        return False

    return sum(augment(u, set()) for u in left)


# ------------------------------------------------------------------------------------ counting
def _dims(text: str) -> list[list[int]]:
    """``"1x8x16x16; 96x8x1x1"`` → ``[[1, 8, 16, 16], [96, 8, 1, 1]]`` (``scalar``/empty → ``[]``)."""
    return [[int(d) for d in s.split("x")] if s and s[0].isdigit() else [] for s in text.split("; ")]


def conv_table(counts: CountResult, elem_bytes: int = 4) -> pd.DataFrame:
    """One row per convolution op: channels, kernel, groups, category, G1 ratio and MAC excess."""
    ops = counts.ops
    rows = []
    for r in ops[ops["category"].isin(CONV_CATEGORIES) & ops["op"].map(is_conv_op)].itertuples():
        shapes = _dims(r.in_shapes)
        out = _dims(r.out_shape)[0]
        x, w = shapes[0], shapes[1]
        if len(x) != 4 or len(w) != 4:
            continue
        c_in, c_out = x[1], w[0]
        groups = max(1, c_in // w[1])
        hw_in, hw_out = x[2] * x[3], out[2] * out[3]
        ratio = excess = float("nan")
        if r.category == "pointwise":
            ratio = max(c_in, c_out) / min(c_in, c_out)
            equal = math.sqrt(c_in * c_out)
            excess = elem_bytes * x[0] * (hw_in * c_in + hw_out * c_out - (hw_in + hw_out) * equal)
        rows.append({"layer": r.layer, "module": r.module, "c_in": c_in, "c_out": c_out,
                     "kernel": f"{w[2]}x{w[3]}", "stride_hw": f"{x[2] // max(out[2], 1)}", "groups": groups,
                     "category": r.category, "ratio": ratio, "mac_excess_bytes": excess, "madds": r.madds,
                     "mac_bytes": r.mac_bytes})
    return pd.DataFrame(rows, columns=list(CONV_COLUMNS))


def _share(part: pd.DataFrame, total: pd.DataFrame, col: str) -> float:
    t = float(total[col].sum())
    return float(part[col].sum()) / t if t else 0.0




def lint_model(cfg: nn.Module | str | Path | dict, *, imgsz: int | None = None, measure: bool = False,
               thresholds: LintThresholds | None = None, threads: int = 1, budget_s: float = 10.0,
               backend: str = "torch", device: str = "cpu", progress: bool = False) -> LintResult:
    """Lint ``cfg`` at ``imgsz`` (default: the config's, else 640 for detectors / 224 for classifiers);
    ``measure`` times each layer with ``backend`` on ``device`` (a backend that times single layers)."""
    th = thresholds or LintThresholds()

    model, name = as_model(cfg, "lint")
    size = int(imgsz) if imgsz is not None else default_imgsz(model)
    check_imgsz(model, size, name)
    in_ch = int(getattr(model, "in_channels", 0) or _first_conv_in(model))
    shape = (1, in_ch, size, size)
    counts = count_model(model, input_shape=shape)
    ops = counts.ops.assign(key=[_layer_key(m) for m in counts.ops["module"]])
    convs = conv_table(counts)
    convs.insert(2, "key", [_layer_key(m) for m in convs["module"]])
    x = example_input(size, channels=in_ch, seed=0)
    frags = trace_fragments(model, x)

    rows, findings = [], []
    for index, key, typ in _layer_list(model):
        lops = ops[ops["key"] == key]
        lconv = convs[convs["key"] == key]
        pw = lconv[lconv["category"] == "pointwise"]
        grp = lconv[lconv["category"] == "group_conv"]
        ew = lops[lops["category"].isin(ELEMENTWISE_CATEGORIES)]
        dw = lops[lops["category"] == "depthwise"]
        fr = frags.get(key, {"fragments": 0, "series_depth": 0, "parallel_width": 0})
        ratio = float(pw["ratio"].max()) if len(pw) else float("nan")
        excess = float(pw["mac_excess_bytes"].sum()) if len(pw) else 0.0
        group_counts = sorted({int(g) for g in grp["groups"]})
        row = {"layer": index, "module": key, "type": typ,
               **{c: int(lops[c].sum()) for c in ("params", "madds", "flops", "mac_bytes")},
               "n_convs": len(lconv), "g1_max_ratio": ratio, "g1_mac_excess_bytes": excess,
               "g1_flag": bool(len(pw) and ratio >= th.g1_ratio),
               "groups": ",".join(map(str, group_counts)), "n_depthwise": int((lconv["category"] == "depthwise").sum()),
               "g2_flag": bool(group_counts and max(group_counts) >= th.g2_groups),
               **fr,
               "g3_flag": bool(fr["parallel_width"] >= th.g3_parallel),
               "ew_flops_share": _share(ew, lops, "flops"), "ew_mac_share": _share(ew, lops, "mac_bytes"),
               "dw_mac_share": _share(dw, lops, "mac_bytes")}
        row["g4_flag"] = bool(row["ew_mac_share"] >= th.g4_mac_share)
        layer_findings = _findings(row, pw, th)
        row["findings"] = "; ".join(f["message"] for f in layer_findings)
        rows.append(row)
        findings.extend({"layer": index, "module": key, "type": typ, **f} for f in layer_findings)
    layers = pd.DataFrame(rows, columns=list(LAYER_COLUMNS))
    finding_df = pd.DataFrame(findings, columns=["layer", "module", "type", "guideline", "value", "message"])
    all_ew = ops[ops["category"].isin(ELEMENTWISE_CATEGORIES)]
    totals = {**{c: int(ops[c].sum()) for c in ("params", "madds", "flops", "mac_bytes")},
              "ew_flops_share": _share(all_ew, ops, "flops"), "ew_mac_share": _share(all_ew, ops, "mac_bytes"),
              "g1_mac_excess_bytes": float(convs["mac_excess_bytes"].sum(skipna=True))}
    warnings: list[str] = []
    if measure:
        layers, warnings = _measure(model, x, layers, threads=threads, budget_s=budget_s, backend=backend,
                                    device=device, progress=progress)
    return LintResult(name, size, layers, convs.drop(columns="key"), finding_df, totals, th, measure, warnings)


def _first_conv_in(model: nn.Module) -> int:
    for p in model.parameters():
        if p.dim() == 4:
            return int(p.shape[1])
    raise ConfigError(f"{type(model).__name__}: cannot tell its input channels (no in_channels, no conv)")


def _findings(row: dict[str, Any], pw: pd.DataFrame, th: LintThresholds) -> list[dict[str, Any]]:
    out = []
    if row["g1_flag"]:
        worst = pw.loc[pw["ratio"].idxmax()]
        out.append({"guideline": "G1", "value": row["g1_max_ratio"],
                    "message": f"G1: 1×1 conv {worst['c_in']}→{worst['c_out']} (ratio {worst['ratio']:.1f}); "
                               f"{row['g1_mac_excess_bytes'] / 1e6:.2f} MB more memory traffic than equal widths "
                               "at the same FLOPs"})
    if row["g2_flag"]:
        out.append({"guideline": "G2", "value": max(int(g) for g in row["groups"].split(",")),
                    "message": f"G2: group conv with groups={row['groups']}"})
    if row["g3_flag"]:
        out.append({"guideline": "G3", "value": row["parallel_width"],
                    "message": f"G3: {row['fragments']} fragments, {row['parallel_width']} in parallel, "
                               f"{row['series_depth']} in series"})
    if row["g4_flag"]:
        out.append({"guideline": "G4", "value": row["ew_mac_share"],
                    "message": f"G4: element-wise ops are {row['ew_mac_share']:.0%} of mac_bytes "
                               f"({row['ew_flops_share']:.0%} of flops)"})
    return out


def _measure(model: nn.Module, x: torch.Tensor, layers: pd.DataFrame, *, threads: int, budget_s: float,
             backend: str, device: str, progress: bool) -> tuple[pd.DataFrame, list[str]]:
    timing = profile_layers(model, x, threads=threads, budget_s=budget_s, backend=backend, device=device,
                            progress=progress)
    t = timing.table.rename(columns={"share": "latency_share"})
    cols = ["module", "estimate_ms", "ci_low_ms", "ci_high_ms", "median_ms", "latency_share"]
    merged = layers.merge(t[cols], on="module", how="left")
    notes = [*timing.warnings, timing.summary()]
    return merged, notes


def _records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """DataFrame rows as JSON-safe dicts (NaN → None)."""
    return json.loads(df.to_json(orient="records"))
