"""Block families. Importing this package registers every block with :mod:`latlab.ops.registry`."""

from latlab.ops.blocks import (  # noqa: F401
    efficientformer,
    ghost,
    heads,
    lcnet,
    mobilenet,
    shufflenet,
    yolo,
)
