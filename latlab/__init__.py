"""latlab: latency-aware architecture search and benchmarking lab for lightweight CNNs.

The public entry points a notebook needs are re-exported here; everything else lives in its
own module (``latlab.ops``, ``latlab.profiling``, ``latlab.detection``, ``latlab.search`` ...).
"""

from latlab.errors import LatlabError

__version__ = "0.1.0"


def build_model(cfg, **overrides):
    """Build a model from a YAML path, a zoo name or a dict (see :func:`latlab.ops.builder.build_model`)."""
    from latlab.ops.builder import build_model as _build  # start-up: `import latlab` stays torch-free, ≈1.1 s

    return _build(cfg, **overrides)


__all__ = ["LatlabError", "__version__", "build_model"]
