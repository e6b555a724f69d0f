"""Counts of an ONNX graph: parameters and multiply-adds read from the graph itself, nothing invented.

An ONNX file is not run through PyTorch, so the dispatch counter (:mod:`latlab.profiling.counter`) cannot
see it. What the graph states is counted: ``params`` from its initializers (each charged to the first node
that reads it, as the PyTorch counter charges a weight to its first op), ``madds`` of ``Conv``,
``ConvTranspose``, ``Gemm`` and ``MatMul`` from the weight shapes and the output shapes that ONNX shape
inference gives for the input size asked for (bias excluded, the PyTorch counter's convention). FLOPs,
memory access bytes, activation elements and YOLOv5's GFLOPs need per-op rules latlab keeps for aten ops
only, so they are listed in :attr:`OnnxCount.unavailable` instead of being guessed. Exporters fold
BatchNorm into the preceding convolution, so a graph's parameter count can be below its PyTorch model's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from latlab.errors import ConfigError
from latlab.ops.sources import OnnxGraph

ONNX_COLUMNS: tuple[str, ...] = ("node", "op_type", "params", "madds", "in_shapes", "out_shape")
ONNX_SUM_COLUMNS: tuple[str, ...] = ("params", "madds")
UNAVAILABLE: tuple[str, ...] = ("flops", "mac_bytes", "act_elems", "yolo_gflops")
MADD_OPS: tuple[str, ...] = ("Conv", "ConvTranspose", "Gemm", "MatMul")


@dataclass(eq=False)
class OnnxCount:
    """Per-node counts of an ONNX graph (columns :data:`ONNX_COLUMNS`); ``madds`` is NaN where shape
    inference gave no shape (``notes`` says for how many nodes)."""

    ops: pd.DataFrame
    input_shape: tuple[int, ...]
    unavailable: tuple[str, ...] = UNAVAILABLE
    notes: list[str] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        """Sums of ``params`` and ``madds`` (nodes without a shape left out; see ``notes``)."""
        return {c: int(self.ops[c].sum(skipna=True)) for c in ONNX_SUM_COLUMNS}

    def by_layer(self) -> pd.DataFrame:
        """One row per graph node, in graph order."""
        return self.ops.copy()

    def by_op(self) -> pd.DataFrame:
        """One row per ONNX op type: the sums and ``n_ops``."""
        grouped = self.ops.groupby("op_type", sort=False)
        out = grouped[list(ONNX_SUM_COLUMNS)].sum(min_count=1)
        out["n_ops"] = grouped.size()
        return out.reset_index()


def _shape(value_info: Any) -> tuple[int, ...] | None:
    dims = value_info.type.tensor_type.shape.dim
    if not value_info.type.tensor_type.HasField("shape") or any(not d.HasField("dim_value") for d in dims):
        return None
    return tuple(int(d.dim_value) for d in dims)


def _attr(node: Any, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _madds(node: Any, shapes: dict[str, tuple[int, ...] | None]) -> float:
    """Multiply-adds of one node from its input and output shapes; NaN when a shape is unknown."""
    if node.op_type not in MADD_OPS:
        return 0.0
    ins = [shapes.get(n) for n in node.input[:2]]
    out = shapes.get(node.output[0])
    if out is None or any(s is None for s in ins) or len(ins) < 2:
        return math.nan
    a, w = ins
    assert a is not None and w is not None
    if node.op_type == "Conv":  # W: [Cout, Cin/groups, k...]
        return float(math.prod(out) * math.prod(w[1:]))
    if node.op_type == "ConvTranspose":  # W: [Cin, Cout/groups, k...]; every input element meets a kernel
        return float(math.prod(a) * math.prod(w[1:]))
    if node.op_type == "Gemm":  # A (M×K, or K×M with transA) · B
        k = a[0] if _attr(node, "transA", 0) else a[-1]
        return float(math.prod(out) * k)
    return float(math.prod(out) * a[-1])  # MatMul: every output element is a K-long dot product


def _fmt(shape: tuple[int, ...] | None) -> str:
    return "?" if shape is None else "x".join(map(str, shape)) or "scalar"


def count_onnx(graph: OnnxGraph, imgsz: int | None = None) -> OnnxCount:
    """Count ``graph`` on its input shape (fixed dims as exported, dynamic ones from ``imgsz``)."""
    import onnx  # optional dependency (the onnx extra); OnnxGraph could only be loaded with it

    shape = graph.input_shape(imgsz)
    model = onnx.ModelProto()
    model.CopyFrom(graph.proto)
    inits = {t.name: t for t in model.graph.initializer}
    image = next(i for i in model.graph.input if i.name not in inits)
    for dim, size in zip(image.type.tensor_type.shape.dim, shape, strict=True):
        dim.Clear()
        dim.dim_value = size
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise ConfigError(f"'{graph.path}': ONNX shape inference failed at input {_fmt(shape)}: "
                          f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]}") from None
    g = inferred.graph
    shapes: dict[str, tuple[int, ...] | None] = {
        v.name: _shape(v) for v in (*g.input, *g.value_info, *g.output)}
    shapes.update({name: tuple(int(d) for d in t.dims) for name, t in inits.items()})
    seen: set[str] = set()
    rows = []
    for i, node in enumerate(g.node):
        params = 0
        for name in node.input:
            if name in inits and name not in seen:
                seen.add(name)
                params += math.prod(inits[name].dims)
        rows.append((node.name or f"{node.op_type}_{i}", node.op_type, params, _madds(node, shapes),
                     "; ".join(_fmt(shapes.get(n)) for n in node.input if n),
                     _fmt(shapes.get(node.output[0]) if node.output else None)))
    unused = sum(math.prod(t.dims) for name, t in inits.items() if name not in seen)
    if unused:
        rows.append(("(unused initializers)", "(unused)", unused, 0.0, "", ""))
    ops = pd.DataFrame.from_records(rows, columns=list(ONNX_COLUMNS))
    notes = []
    unknown = int(ops["madds"].isna().sum())
    if unknown:
        notes.append(f"multiply-adds unknown for {unknown} node(s): shape inference gave no shape (left out of "
                     "the total)")
    return OnnxCount(ops=ops, input_shape=shape, notes=notes)
