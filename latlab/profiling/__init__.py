"""Counting and timing models. The FLOP/MAC rule registry is re-exported here for custom ops."""

from latlab.profiling.op_rules import (
    OpCost,
    OpRule,
    get_op_rule,
    op_rule_scope,
    register_op_rule,
    registered_ops,
    unregister_op_rule,
)

__all__ = ["OpCost", "OpRule", "get_op_rule", "op_rule_scope", "register_op_rule", "registered_ops",
           "unregister_op_rule"]
