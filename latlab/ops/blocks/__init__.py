"""Block families. Importing this package imports every module in it, which registers its blocks (and
searchable families) with :mod:`latlab.ops.registry`: a new block file needs no edit here."""

import importlib
import pkgutil

for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")
