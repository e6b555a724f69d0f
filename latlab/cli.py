"""The ``latlab`` command line: a thin typer app over library calls.

Each area registers its commands from ``latlab/commands/<area>.py`` (``register(app)``), so every command
is parse args → one library call → print or save. ``LatlabError`` becomes one red line and exit code 2
(an ``Interrupted`` one, a command stopped cleanly by Ctrl-C, 130).
"""

from __future__ import annotations

import importlib
import sys

import typer
from rich.console import Console
from rich.markup import escape

from latlab.errors import LatlabError

app = typer.Typer(
    name="latlab",
    help="Latency-aware architecture search and benchmarking for lightweight CNN detectors.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err_console = Console(stderr=True)

COMMAND_MODULES = (
    "latlab.commands.models",
    "latlab.commands.count",
    "latlab.commands.profiling",
    "latlab.commands.guidelines",
    "latlab.commands.detection",
    "latlab.commands.search",
    "latlab.commands.lut",
    "latlab.commands.report",
    "latlab.commands.quickstart",
    "latlab.commands.fidelity",
    "latlab.commands.supernet",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # area not built yet
                continue
            raise
        module.register(app)


_register_all()


MAX_MESSAGE = 1000  # characters of an error line; the rest is elided (a message may quote a huge input)


def one_line(message: str, limit: int = MAX_MESSAGE) -> str:
    """``message`` on one line (line breaks become spaces), at most ``limit`` characters plus a note."""
    text = " ".join(message.split())
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text) - limit} more characters)"


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app; a ``LatlabError`` becomes one red line and exit code 2 (Ctrl-C: 130). This
    is the only place that turns latlab's exceptions into output."""
    try:
        app(args=argv, standalone_mode=True)
    except LatlabError as exc:
        err_console.print(f"[bold red]error:[/] {escape(one_line(str(exc)))}", highlight=False, soft_wrap=True)
        return getattr(exc, "exit_code", 2)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
