"""The result of a count: :class:`CountResult`, one row per dispatched op, and its group-bys.

Columns of :attr:`CountResult.ops` (one row per dispatched aten op, in execution order):

===============  ==========================================================================================
``layer``        YAML layer index (``layers.<i>``), ``-1`` for ops outside ``layers`` or non-layer models
``module``       dotted path of the innermost module that issued the op (``""`` = the root's own code)
``op``           aten op name without namespace/overload (``convolution``, ``native_batch_norm``, ``relu_``)
``category``     see :mod:`latlab.profiling.categories` (conv, pointwise, depthwise, group_conv, linear, …)
``params``       parameters read by this op the first time any op reads them (so rows sum to the model's
                 ``sum(p.numel())``); views of a weight (``t``) pass it on to the op that consumes the view;
                 parameters no op reads get one row with op ``(unused)``
``madds``        multiply-adds (convolution and matrix products only, bias excluded)
``flops``        ``2·madds`` + bias adds + element-wise/normalisation/activation/pooling work
                 (:mod:`latlab.profiling.op_rules`)
``mac_bytes``    bytes read + written: every distinct tensor input (activations, weights, BN statistics)
                 plus every tensor output the kernel writes (e.g. the int64 indices of
                 ``max_pool2d_with_indices``), each ``numel × element size``; free views cost 0
``act_elems``    elements of the op's (first) output; 0 for free views, which create no new activation
``in_shapes``    tensor input shapes, ``"1x3x640x640; 32x3x6x6"`` (``scalar`` for 0-d tensors)
``out_shape``    output shape(s), same format
===============  ==========================================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from latlab.profiling.categories import CATEGORIES

COLUMNS: tuple[str, ...] = ("layer", "module", "op", "category", "params", "madds", "flops", "mac_bytes",
                            "act_elems", "in_shapes", "out_shape")
SUM_COLUMNS: tuple[str, ...] = ("params", "madds", "flops", "mac_bytes", "act_elems")


@dataclass(eq=False)
class CountResult:
    """Per-op counts of one forward pass. ``ops`` has the columns documented in the module docstring.

    ``yolo_gflops`` is YOLOv5's printed GFLOPs (:mod:`latlab.profiling.counter`; ``yolo_probe`` is the stride-sized
    input side it is scaled from, ``None`` when counted at the input itself) and ``thop_by_type`` thop's
    total at the counted input per module class name. For a detector counted at another size the probe pass
    runs on first access of ``yolo_gflops`` (the result holds the model until then), so counts that never
    read it do not pay for a second forward.
    """

    ops: pd.DataFrame
    input_shape: tuple[int, ...]
    dtype: str
    meta: bool
    blocks: dict[str, str] = field(default_factory=dict)
    thop_by_type: dict[str, float] = field(default_factory=dict)
    yolo_probe: int | None = None
    _yolo_gflops: float | None = field(default=None, repr=False)
    _probe: Callable[[], float] | None = field(default=None, repr=False)

    @property
    def yolo_gflops(self) -> float:
        """YOLOv5's printed GFLOPs for this input (2 × thop's rules, stride-probe scaled for detectors)."""
        if self._yolo_gflops is None:
            probe, self._probe = self._probe, None
            self._yolo_gflops = probe() if probe is not None else 2.0 * sum(self.thop_by_type.values()) / 1e9
        return self._yolo_gflops

    @property
    def totals(self) -> dict[str, int]:
        """Sums of ``params``, ``madds``, ``flops``, ``mac_bytes``, ``act_elems`` over all rows."""
        return {c: int(self.ops[c].sum()) for c in SUM_COLUMNS}

    def _grouped(self, keys: list[str], frame: pd.DataFrame | None = None) -> pd.DataFrame:
        df = self.ops if frame is None else frame
        out = df.groupby(keys, sort=False, dropna=False)[list(SUM_COLUMNS)].sum()
        out["n_ops"] = df.groupby(keys, sort=False, dropna=False).size()
        return out.reset_index()

    def by_layer(self) -> pd.DataFrame:
        """One row per YAML layer (or top-level child): ``layer``, ``name``, ``type``, the sums, ``n_ops``.

        ``name`` is ``layers.<i>`` for layer models, the top-level child name otherwise, ``""`` for the root's
        own code; ``type`` is that module's class name.
        """
        frame = self.ops.assign(name=[_top_name(m) for m in self.ops["module"]])
        out = self._grouped(["layer", "name"], frame)
        out.insert(2, "type", [self.blocks.get(n, "") for n in out["name"]])
        if (out["layer"] >= 0).any():
            out = out.sort_values("layer", kind="stable").reset_index(drop=True)
        return out

    def by_module(self, depth: int | None = None) -> pd.DataFrame:
        """Sums per module path, truncated to ``depth`` dotted components when given."""
        frame = self.ops
        if depth is not None:
            frame = frame.assign(module=[".".join(m.split(".")[:depth]) for m in frame["module"]])
        return self._grouped(["module"], frame)

    def by_category(self) -> pd.DataFrame:
        """Sums per category (in :data:`CATEGORIES` order) with ``flops_pct`` and ``mac_bytes_pct`` shares."""
        out = self._grouped(["category"])
        order = {c: i for i, c in enumerate(CATEGORIES)}
        out = out.sort_values("category", key=lambda s: s.map(order)).reset_index(drop=True)
        for col in ("flops", "mac_bytes"):
            total = out[col].sum()
            out[f"{col}_pct"] = 100.0 * out[col] / total if total else 0.0
        return out

    def by_op(self) -> pd.DataFrame:
        """Sums per (op, category), most FLOPs first; ``n_ops`` is the number of calls."""
        out = self._grouped(["op", "category"])
        return out.sort_values(["flops", "mac_bytes"], ascending=False, kind="stable").reset_index(drop=True)


def _top_name(path: str) -> str:
    parts = path.split(".")
    if parts[0] == "layers" and len(parts) > 1:
        return f"layers.{parts[1]}"
    return parts[0]
