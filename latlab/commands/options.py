"""The ``--backend`` and ``--device`` options every timing command shares, built from the backend registry.

One definition, so ``profile``, ``compare``, ``guidelines``, ``lint --measure``, ``lut build|check|predict``
and ``search run`` name the same choices with the same help; a backend registered with
``@register_backend`` appears here without editing any command. Names are checked by the library
(``latlab.profiling.backends.get_runner``), whose one-line errors list the registered choices.
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from latlab.profiling.backends import device_names, list_backends


def backend_help(note: str = "") -> str:
    """``--backend`` help: ``note``, then one entry per registered backend (devices, extra, description);
    escaped because typer renders help as rich markup (``latlab[onnx]`` would vanish)."""
    entries = "; ".join(spec.help() for spec in list_backends())
    return escape(f"{note} One of: {entries}." if note else f"One of: {entries}.")


def device_help(note: str = "") -> str:
    """``--device`` help: the devices of the registered backends, then ``note``."""
    return escape(f"{' or '.join(device_names())}. {note}".strip())


def backend_option(default: str | None = "torch", note: str = "") -> Any:
    """A ``--backend`` typer option (``default=None``: take it from elsewhere, e.g. the latency table)."""
    return typer.Option(default, "--backend", help=backend_help(note))


def device_option(default: str | None = "cpu", note: str = "") -> Any:
    """A ``--device`` typer option (``default=None``: take it from elsewhere, e.g. the latency table)."""
    return typer.Option(default, "--device", help=device_help(note))


BACKEND_OPT = backend_option()
DEVICE_OPT = device_option()
