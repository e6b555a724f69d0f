"""Reading user YAML files safely, with the file, line and column in every parse error.

Besides ``yaml.safe_load`` (no tags, nothing evaluated), a loaded document is bounded before anyone walks
it: aliases are references, so a few hundred bytes of ``&a [*b, *b, ...]`` spell 10¹⁰ items that a
recursive reader would expand. :func:`check_document` counts the items a full expansion would visit (one
memoised pass over the distinct objects, so the count itself cannot blow up) and the nesting depth, and
refuses documents over the limits, naming the limit and the environment variable that raises it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from latlab.errors import ConfigError, LatlabError
from latlab.validate import Limit

MAX_YAML_NODES = Limit("YAML item count (aliases expanded)", 1_000_000, "LATLAB_MAX_YAML_NODES")
MAX_YAML_DEPTH = Limit("YAML nesting depth", 64, "LATLAB_MAX_YAML_DEPTH")


def safe_load_text(text: str) -> Any:
    """``yaml.safe_load`` of a string (errors are PyYAML's; :func:`read_yaml` names the file)."""
    return yaml.safe_load(text)


def read_yaml(path: Path | str, *, what: str = "YAML file", error: type[LatlabError] = ConfigError) -> Any:
    """``yaml.safe_load`` a file, then bound it (:func:`check_document`); every problem raises ``error``
    naming the file: missing, not UTF-8, malformed (with line and column), nested or aliased too far."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: {what} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset "
                    f"{exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise error(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        data = safe_load_text(text)
    except RecursionError:
        raise error(f"{path}: {what} is nested too deeply to parse; {MAX_YAML_DEPTH.hint()}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise error(f"{path}: malformed YAML{where}: {getattr(exc, 'problem', None) or exc}") from None
    check_document(data, str(path), error=error)
    return data


def check_document(data: Any, source: str, *, error: type[LatlabError] = ConfigError) -> None:
    """Refuse a loaded document that nests deeper than ``MAX_YAML_DEPTH``, refers to itself, or expands
    (aliases followed) to more than ``MAX_YAML_NODES`` items. Iterative and memoised: linear in the
    number of distinct objects, whatever their expanded size."""
    max_nodes, max_depth = MAX_YAML_NODES.value, MAX_YAML_DEPTH.value
    size: dict[int, int] = {}  # id → expanded item count of a finished container
    on_path: set[int] = set()
    stack: list[tuple[Any, int, bool]] = [(data, 1, False)]
    while stack:
        node, depth, done = stack.pop()
        if not isinstance(node, list | dict):
            continue
        key = id(node)
        children = list(node.keys()) + list(node.values()) if isinstance(node, dict) else node
        if done:
            on_path.discard(key)
            total = 1 + sum(size.get(id(c), 1) if isinstance(c, list | dict) else 1 for c in children)
            size[key] = total
            if total > max_nodes:
                raise error(f"{source}: the document expands to more than {max_nodes:g} items (YAML aliases "
                            f"repeat what they refer to); {MAX_YAML_NODES.hint()}")
            continue
        if key in size:
            continue
        if key in on_path:
            raise error(f"{source}: the document refers to itself through an alias (a cycle)")
        if depth > max_depth:
            raise error(f"{source}: lists or mappings nested more than {max_depth:g} deep; {MAX_YAML_DEPTH.hint()}")
        on_path.add(key)
        stack.append((node, depth, True))
        stack.extend((c, depth + 1, False) for c in children if isinstance(c, list | dict))
