"""A live view of a search study: optuna-dashboard served on the study's own storage.

The study is opened the way ``search show`` opens it (:func:`latlab.search.storage.load_search_study`: the
default journal file, a journal path or an RDB URL), so a typo fails with latlab's one-line error before a
server starts. optuna-dashboard's WSGI app then runs on a threaded ``wsgiref`` server in a background
thread, bound to ``127.0.0.1`` unless another host is asked for (the dashboard can rename and delete studies,
so it is not exposed to the network by default). :func:`serve_dashboard` returns a handle to stop it, which
is what the CLI does on Ctrl-C and what tests do after fetching its REST API.
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from latlab.errors import SearchError
from latlab.runs import RESULTS_ROOT
from latlab.search.storage import load_search_study

EXTRA = "dashboard"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request: the dashboard's page polls several API routes at once."""

    daemon_threads = True
    block_on_close = False  # stopping never waits on a browser's open request


class _QuietHandler(WSGIRequestHandler):
    """No access log line per request on stderr (the page polls every few seconds)."""

    def log_message(self, format: str, *args: Any) -> None:
        return None


@dataclass
class DashboardServer:
    """A running dashboard: its ``url``, the study and storage it shows; ``stop()`` shuts it down."""

    url: str
    study: str
    storage: str
    _server: WSGIServer = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the server stops (or ``timeout`` seconds pass); Ctrl-C raises KeyboardInterrupt.

        Joins in short slices so the interrupt is seen at once, and (in the main thread) installs Python's
        own SIGINT handler while waiting: a process started in the background by a shell inherits SIGINT
        ignored, and Python then never installs it, so ``kill -INT`` would not stop the server."""
        main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, signal.default_int_handler) if main else None
        try:
            end = None if timeout is None else time.monotonic() + timeout
            while self._thread.is_alive():
                left = 0.5 if end is None else min(0.5, end - time.monotonic())
                if left <= 0:
                    return
                self._thread.join(left)
        finally:
            if main:
                signal.signal(signal.SIGINT, previous)

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def _dashboard_wsgi() -> Any:
    """optuna-dashboard's ``wsgi(storage)`` factory; a one-line error naming the extra when it is missing."""
    try:
        from optuna_dashboard import wsgi  # optional dependency (the dashboard extra)
    except ImportError:
        raise SearchError(f"latlab search dashboard needs optuna-dashboard: pip install 'latlab[{EXTRA}]'"
                          ) from None
    return wsgi


def serve_dashboard(study: str, storage: str | None = None, *, host: str = DEFAULT_HOST,
                    port: int = DEFAULT_PORT, root: Path | str = RESULTS_ROOT) -> DashboardServer:
    """Serve optuna-dashboard for ``study`` (in ``storage``, default its journal under ``root``) on
    ``host:port`` in a background thread; ``port=0`` picks a free port (the handle's ``url`` says which)."""
    if not 0 <= port <= 65535:
        raise SearchError(f"--port must be between 1 and 65535 (0: any free port), got {port}")
    wsgi = _dashboard_wsgi()
    _, info = load_search_study(study, storage, root)
    app = wsgi(info.storage)
    try:
        server = make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    except OSError as exc:
        raise SearchError(f"cannot serve the dashboard on {host}:{port}: {exc.strerror or exc} "
                          "(pick another --port or --host)") from None
    bound_host, bound_port = server.server_address[:2]
    shown = f"[{bound_host}]" if ":" in str(bound_host) else bound_host
    thread = threading.Thread(target=server.serve_forever, name="latlab-dashboard", daemon=True)
    thread.start()
    return DashboardServer(f"http://{shown}:{bound_port}/dashboard", study, info.location, server, thread)
