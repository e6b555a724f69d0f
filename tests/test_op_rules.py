"""The FLOP/MAC rule registry: a custom torch.library op counted with and without a rule, against hand counts."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from latlab.errors import ConfigError
from latlab.profiling import (
    OpCost,
    get_op_rule,
    op_rule_scope,
    register_op_rule,
    registered_ops,
    unregister_op_rule,
)
from latlab.profiling.counter import count_model

OP = "latlab_test::scaled_add"


@torch.library.custom_op(OP, mutates_args=())
def scaled_add(x: torch.Tensor, y: torch.Tensor, alpha: float) -> torch.Tensor:
    return x + alpha * y


@scaled_add.register_fake
def _(x, y, alpha):
    return torch.empty_like(x)


def scaled_add_rule(args, kwargs, inputs, outputs):
    n = outputs[0].numel()  # one multiply and one add per output element
    return OpCost(madds=n, flops=2 * n, category="elementwise")


class Net(nn.Module):
    """conv 3→8 3×3 (no bias) on 1×3×8×8, relu, then scaled_add(conv, relu, 0.5): 512 outputs each."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)

    def forward(self, x):
        a = self.conv(x)
        return scaled_add(a, torch.relu(a), 0.5)


N = 8 * 8 * 8  # output elements of every op
CONV_MADDS = N * 3 * 9  # n_out · C_in · K
F32 = 4


def _row(result, op="scaled_add"):
    rows = result.ops[result.ops["op"] == op]
    assert len(rows) == 1
    return rows.iloc[0]


@pytest.mark.parametrize("meta", [True, False])
def test_custom_op_without_rule_counts_bytes_but_no_flops(meta):
    assert get_op_rule(OP) is None
    r = count_model(Net(), (1, 3, 8, 8), meta=meta)
    row = _row(r)
    assert (row["madds"], row["flops"], row["category"]) == (0, 0, "other")
    assert row["mac_bytes"] == 3 * N * F32  # reads a and relu(a), writes the output
    assert row["act_elems"] == N
    assert r.totals["madds"] == CONV_MADDS
    assert r.totals["flops"] == 2 * CONV_MADDS + N  # conv + relu


@pytest.mark.parametrize("meta", [True, False])
def test_custom_op_with_rule_matches_hand_count(meta):
    with op_rule_scope(OP, scaled_add_rule):
        r = count_model(Net(), (1, 3, 8, 8), meta=meta)
    row = _row(r)
    assert (row["madds"], row["flops"], row["category"]) == (N, 2 * N, "elementwise")
    assert row["mac_bytes"] == 3 * N * F32  # default bytes kept
    assert r.totals["madds"] == CONV_MADDS + N
    assert r.totals["flops"] == 2 * CONV_MADDS + N + 2 * N
    assert get_op_rule(OP) is None  # the scope put the registry back


def test_register_decorator_packet_key_and_unregister():
    @register_op_rule(torch.ops.latlab_test.scaled_add)
    def rule(args, kwargs, inputs, outputs):
        return OpCost(flops=7 * outputs[0].numel(), mac_bytes=100)

    try:
        assert get_op_rule(OP) is rule
        assert OP in registered_ops()
        row = _row(count_model(Net(), (1, 3, 8, 8)))
        assert (row["flops"], row["mac_bytes"], row["category"]) == (7 * N, 100, "other")
    finally:
        assert unregister_op_rule(OP) is rule
    assert get_op_rule(OP) is None
    with pytest.raises(ConfigError, match="no op rule"):
        unregister_op_rule(OP)


def test_registering_twice_without_override_is_an_error():
    register_op_rule(OP, scaled_add_rule)
    try:
        with pytest.raises(ConfigError, match="already has an op rule"):
            register_op_rule(OP, scaled_add_rule)
        other = lambda *a: OpCost()  # noqa: E731
        assert register_op_rule(OP, other, override=True) is other
        assert get_op_rule(OP) is other
    finally:
        unregister_op_rule(OP)
    with pytest.raises(ConfigError, match="already has an op rule"):  # built-ins go through the same table
        register_op_rule("aten::convolution", scaled_add_rule)


def test_builtin_rule_can_be_overridden_for_a_scope():
    assert "aten::relu" in registered_ops() and "aten::convolution" in registered_ops()
    before = _row(count_model(Net(), (1, 3, 8, 8)), "relu")["flops"]
    with op_rule_scope("aten::relu", lambda a, k, i, o: OpCost(flops=3 * o[0].numel())):
        during = _row(count_model(Net(), (1, 3, 8, 8)), "relu")["flops"]
    after = _row(count_model(Net(), (1, 3, 8, 8)), "relu")["flops"]
    assert (before, during, after) == (N, 3 * N, N)


def test_bad_names_and_results_are_errors():
    for bad in ("scaled_add", "latlab_test::scaled_add.default", "a::b::c", 3):
        with pytest.raises(ConfigError, match="namespace::name"):
            register_op_rule(bad, scaled_add_rule)
    with pytest.raises(ConfigError, match="overload packet"):
        register_op_rule(torch.ops.aten.add.Tensor, scaled_add_rule)
    with pytest.raises(ConfigError, match="unknown category"):
        OpCost(flops=1, category="arithmetic")
    with op_rule_scope(OP, lambda *a: (1, 2)), pytest.raises(ConfigError, match="expected OpCost"):
        count_model(Net(), (1, 3, 8, 8))


def test_readme_example_runs_and_prints_its_numbers(capsys):
    text = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"#### FLOP rules for custom ops.*?```python\n(.*?)```", text, re.S).group(1)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        unregister_op_rule("latlab_demo::scaled_add")
    assert capsys.readouterr().out.strip() == "[{'madds': 1024, 'flops': 2048, 'category': 'elementwise'}]"
