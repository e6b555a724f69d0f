"""Reading user YAML files safely, with the file, line and column in every parse error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from latlab.errors import ConfigError, LatlabError


def read_yaml(path: Path | str, *, what: str = "YAML file", error: type[LatlabError] = ConfigError) -> Any:
    """``yaml.safe_load`` a file; a missing file or a parse error raises ``error`` naming where it is."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
