"""Model building: the block registry, the block families and the YAML builder.

Importing the package imports :mod:`latlab.ops.blocks`, whose modules register every block class and
searchable family with :mod:`latlab.ops.registry`; so any ``latlab.ops.*`` import sees a full registry.
"""

from latlab.ops import blocks as blocks  # registers the blocks and families (their decorators run on import)
