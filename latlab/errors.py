"""Exceptions latlab raises on bad input.

Every message names where the problem is (file, layer, field) and what was expected, so the CLI can
print it as one line and exit non-zero instead of showing a traceback from deep inside torch.
"""


class LatlabError(Exception):
    """Base class: a user-facing error with a one-line message."""


class ConfigError(LatlabError):
    """A model or search-space YAML is malformed or names something that does not exist."""


class ModelBuildError(ConfigError):
    """A layer of a model YAML could not be built (bad args, channel mismatch, bad ``from``)."""

    def __init__(self, message: str, *, layer: int | None = None, field: str | None = None,
                 source: str | None = None):
        where = []
        if source:
            where.append(str(source))
        if layer is not None:
            where.append(f"layer {layer}")
        if field:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.layer = layer
        self.field = field
        self.source = source


class UnknownModelError(LatlabError):
    """A zoo name or config path that does not exist."""


class DeviceError(LatlabError):
    """A requested device or backend is not available (no GPU, missing extra)."""


class DataError(LatlabError):
    """A dataset or label file is missing or malformed."""


class SearchError(LatlabError):
    """A search study or space cannot be used as asked."""


class TableError(LatlabError):
    """A latency table is corrupt, incompatible or missing an entry."""


class Interrupted(LatlabError):
    """The user stopped a command (Ctrl-C); it cleaned up and says how to continue. Exit code 130."""

    exit_code = 130
