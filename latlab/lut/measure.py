"""Time latency-table entries and count their blocks: the measuring half of ``latlab lut build``.

:func:`measure_units` times a set of blocks with a table's protocol (:func:`default_protocol`: batches of
blocks interleaved with :func:`latlab.profiling.compare.run_interleaved`, shuffled per round, the
low-percentile estimator) and adds them to the table; :func:`measure_models` times whole models end to end
for the calibration; :func:`count_units` gives each block's params, madds and mac_bytes. The build
(:mod:`latlab.lut.build`) and the predictor (:mod:`latlab.lut.predict`, which times blocks a table lacks)
both use these.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
from torch import nn

from latlab.inputs import example_input
from latlab.lut.keys import Unit
from latlab.lut.table import Entry, LatencyTable
from latlab.profiling.compare import run_interleaved
from latlab.profiling.counter import count_model
from latlab.progress import ProgressReporter, ProgressTask, as_progress

DEFAULT_ROUNDS = 60
BAR_SHOW = ("label", "bar", "count", "remaining")  # the columns of the build's progress bars
DEFAULT_BATCH = 12


def count_units(model: nn.Module, units: Sequence[Unit], imgsz: int) -> dict[str, tuple[int, int, int]]:
    """(params, madds, mac_bytes) of each unit, from one count of the whole model (ops grouped by path)."""
    ops = count_model(model, imgsz=imgsz).ops
    modules = ops["module"].astype(str).to_numpy()
    out = {}
    for u in units:
        if u.key in out:
            continue
        mask = np.array([m == u.path or m.startswith(u.path + ".") for m in modules])
        sub = ops[mask]
        out[u.key] = (int(sub["params"].sum()), int(sub["madds"].sum()), int(sub["mac_bytes"].sum()))
    return out


def default_protocol(rounds: int = DEFAULT_ROUNDS, batch: int = DEFAULT_BATCH, estimator: str = "p10") -> dict[str, Any]:
    """How entries are timed (stored in the table; the kit runner follows the same protocol)."""
    return {"engine": "interleaved", "rounds": int(rounds), "batch": int(batch), "warmup_rounds": 3,
            "calls_per_round": 1, "estimator": estimator, "order": "shuffled per round",
            "input": "one fixed random tensor per block (seed 0), batch 1, float32"}


def _entry(u: Unit, m: Any, counts: tuple[int, int, int]) -> Entry:
    params, madds, mac = counts
    return Entry(type=u.type, estimate_ms=m.estimate_ms, median_ms=m.median_ms, iqr_ms=m.iqr_ms, p10_ms=m.p10_ms,
                 min_ms=m.min_ms, n=m.n, part=u.part, fields=u.fields, args={k: _jsonable(v) for k, v in u.args.items()},
                 in_shapes=[list(s) for s in u.in_shapes], out_shape=list(u.out_shape), params=params,
                 madds=madds, mac_bytes=mac)


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def measure_units(table: LatencyTable, units: Sequence[Unit], counts: dict[str, tuple[int, int, int]], *,
                  progress: bool | ProgressReporter = True,
                  on_batch: Callable[[list[tuple[str, Entry]]], None] | None = None, seed: int = 0) -> list[str]:
    """Time ``units`` with the table's protocol, add them to ``table.entries``; returns the new keys.

    ``on_batch`` is called with each finished batch (the build appends it to the journal).
    """
    proto = table.protocol
    rounds, size = int(proto.get("rounds", DEFAULT_ROUNDS)), int(proto.get("batch", DEFAULT_BATCH))
    todo = list({u.key: u for u in units if u.key not in table.entries}.values())
    order = np.random.default_rng(seed).permutation(len(todo))
    todo = [todo[i] for i in order]
    done: list[str] = []
    with progress_task(progress, "timing blocks", len(todo)) as bar:
        for start in range(0, len(todo), size):
            batch = todo[start:start + size]
            run = run_interleaved({u.key: u.module for u in batch}, {u.key: u.example_input() for u in batch},
                                  rounds=rounds, estimator=table.estimator, backend=table.backend,
                                  device=table.device, threads=table.threads,
                                  warmup_rounds=int(proto.get("warmup_rounds", 3)), seed=start,
                                  progress=False, check_busy=False)
            got = [(u.key, _entry(u, run.measurements[u.key], counts[u.key])) for u in batch]
            for k, e in got:
                table.entries[k] = e
            if on_batch:
                on_batch(got)
            done += [k for k, _ in got]
            bar.advance(len(batch))
    return done


def measure_models(models: dict[str, nn.Module], imgsz: int, *, backend: str = "torch", threads: int = 1,
                   device: str = "cpu", rounds: int = DEFAULT_ROUNDS, estimator: str = "p10",
                   progress: bool | ProgressReporter = True) -> dict[str, Any]:
    """End-to-end Measurement of each model, all interleaved in one run (eval mode, batch 1)."""
    if not models:
        return {}
    x = example_input(imgsz, seed=0)
    run = run_interleaved(models, x, rounds=rounds, estimator=estimator, backend=backend, device=device,
                          threads=threads, progress=progress, check_busy=False)
    return run.measurements


def progress_task(progress: bool | ProgressReporter, label: str,
                  total: int) -> AbstractContextManager[ProgressTask]:
    """A ``label`` bar of ``total`` steps for ``progress`` (:func:`latlab.progress.as_progress`); nothing is
    shown when there is nothing to do (``total == 0``)."""
    return as_progress(progress if total else False).task(label, total, show=BAR_SHOW)
