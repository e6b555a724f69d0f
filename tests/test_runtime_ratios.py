"""Backends timed side by side in one interleaved run (``compare_runtimes``, ``run_prepared``).

The ratio arithmetic is checked on hand-made samples; a real run of a tiny net on eager torch and ONNX
Runtime checks that every row records its own backend, precision and runtime; a backend whose conversion
fails is left out with its reason while the others are still timed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from latlab.errors import DeviceError, LatlabError
from latlab.profiling.backends import Runner, register_backend, unregister_backend
from latlab.profiling.runtime_ratios import compare_runtimes, installed_backends, pair_key, per_round_ratios


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 1)).eval()


def test_per_round_ratios_by_hand():
    a = np.array([[2.0, 4.0], [3.0, 3.0], [10.0, 10.0]])  # per-round medians 3, 3, 10
    ref = np.array([[1.0, 2.0], [2.0, 2.0], [5.0, 5.0]])  # 1.5, 2, 5
    assert per_round_ratios(a, ref) == pytest.approx([2.0, 1.5, 2.0])
    with pytest.raises(LatlabError, match="same rounds"):
        per_round_ratios(a, ref[:2])


def test_installed_backends_run_on_the_cpu_and_import():
    names = installed_backends("cpu")
    assert names[0] == "torch" and "torch-compile" in names
    pytest.importorskip("onnxruntime")
    assert "onnxruntime" in names


class _Broken(Runner):
    def prepare(self, model, example_input):
        raise RuntimeError("cannot convert this model\nsecond line")


def test_backends_share_one_run_and_a_failed_conversion_is_skipped():
    pytest.importorskip("onnxruntime")
    register_backend("broken-test", devices=("cpu",), description="always fails")(_Broken)
    try:
        result = compare_runtimes({"net": _net()}, ["onnxruntime", "broken-test"], torch.rand(1, 3, 32, 32),
                                  rounds=4, progress=False, check_busy=False, speed_reference=False)
    finally:
        unregister_backend("broken-test")
    assert result.skipped == {("net", "broken-test"): "RuntimeError: cannot convert this model"}
    table = result.table().set_index("backend")
    assert list(table.index) == ["torch", "onnxruntime"] and (table["rounds"] == 4).all()
    assert table.loc["torch", "ratio_median"] == 1.0 and table.loc["torch", "ratio_ci_low"] == 1.0
    assert table.loc["onnxruntime", "runtime_version"].startswith("onnxruntime ")
    assert table.loc["onnxruntime", "precision"] == "fp32"
    run = result.run
    expected = float(np.median(run.samples[pair_key("net", "onnxruntime")][:, 0]
                               / run.samples[pair_key("net", "torch")][:, 0]))
    assert table.loc["onnxruntime", "ratio_median"] == pytest.approx(expected)
    low, high = table.loc["onnxruntime", ["ratio_ci_low", "ratio_ci_high"]]
    assert low <= expected <= high
    assert len(result.rounds_table()) == 2 * 4


def test_a_backend_off_the_cpu_or_unknown_is_one_line_before_converting():
    with pytest.raises(DeviceError, match="unknown backend 'nope'"):
        compare_runtimes({"net": _net()}, ["nope"], torch.rand(1, 3, 8, 8))
    with pytest.raises(LatlabError, match="at least one model"):
        compare_runtimes({}, ["torch"], torch.rand(1, 3, 8, 8))
