"""Counting and timing models. The FLOP/MAC rule registry is re-exported here for custom ops.

Importing the package registers every backend (``latlab.profiling.runtimes``) next to the built-in ones.
"""

from latlab.profiling.op_rules import (
    OpCost,
    OpRule,
    get_op_rule,
    op_rule_scope,
    register_op_rule,
    registered_ops,
    unregister_op_rule,
)
from latlab.profiling.runtimes import (  # registers those backends
    executorch_xnnpack,
    onnxruntime_int8,
    openvino,
    torch_compile,
)

__all__ = [
    "OpCost",
    "OpRule",
    "executorch_xnnpack",
    "get_op_rule",
    "onnxruntime_int8",
    "op_rule_scope",
    "openvino",
    "register_op_rule",
    "registered_ops",
    "torch_compile",
    "unregister_op_rule",
]
