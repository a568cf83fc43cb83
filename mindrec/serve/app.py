"""HTTP serving of a version directory: a starlette app run by uvicorn on 127.0.0.1 only.

Endpoints:
    ``POST /predict``  body: raw Criteo lines, newline-separated (LF or CRLF): the 40
        tab-separated columns of the training data, label first (0 or 1, ignored).
        200 ``{"version": N, "p": [click probability per line]}``; 400 ``{"error",
        "line", "reason"}`` for a malformed line (1-based number) or an empty body;
        503 before the first version is loaded.
    ``GET /version``   ``{"version", "kind", "info", "loaded_at", "error"}``: ``info`` is
        what the trainer published with the version (steps, event-time range, offsets),
        ``loaded_at`` when it came in (Unix seconds): what freshness is measured from.
    ``GET /healthz``   200 ``{"status": "ok", ...}`` while a version is served, else 503.

A thread polls the directory for new versions every ``poll_s`` seconds.
"""
from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from mindrec.data.criteo import CriteoFormatError
from mindrec.files import write_durably
from mindrec.serve.model import NotReady, ServedModel

HOST = "127.0.0.1"


def create_app(model: ServedModel, lifespan=None) -> Starlette:
    """The HTTP endpoints (module docstring) answering from ``model``."""

    async def predict(request: Request) -> JSONResponse:
        lines = (await request.body()).split(b"\n")
        if lines[-1] == b"":
            lines.pop()
        if not lines:
            return JSONResponse({"error": "the body holds no lines: send raw Criteo lines, "
                                          "one per line", "line": None, "reason": "empty"}, 400)
        try:
            version, p = await run_in_threadpool(model.predict_versioned, lines)
        except CriteoFormatError as exc:
            return JSONResponse({"error": str(exc), "line": exc.line, "reason": exc.reason}, 400)
        except NotReady as exc:
            return JSONResponse({"error": str(exc)}, 503)
        return JSONResponse({"version": version, "p": p.tolist()})

    async def version(request: Request) -> JSONResponse:
        return JSONResponse(model.status())

    async def healthz(request: Request) -> JSONResponse:
        status = model.status()
        ok = status["version"] is not None
        return JSONResponse({"status": "ok" if ok else "no version loaded yet",
                             "version": status["version"], "error": status["error"]},
                            200 if ok else 503)

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                             Route("/version", version), Route("/healthz", healthz)],
                     lifespan=lifespan)


class Poller:
    """Calls ``model.update()`` every ``poll_s`` seconds in a thread. An error that
    update does not handle itself (a bug) ends polling: it is kept in :attr:`error` and
    ``on_error()`` is called (:func:`serve` stops the server with it)."""

    def __init__(self, model: ServedModel, poll_s: float, on_error):
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        self.model, self.poll_s, self.on_error = model, poll_s, on_error
        self.error: Exception | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="version-poller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self.poll_s):
                self.model.update()
        except Exception as exc:  # handed to the main thread, which raises it
            self.error = exc
            self.on_error()


def serve(directory: str | Path, port: int = 0, poll_s: float = 0.2,
          ready_file: str | Path | None = None) -> None:
    """Serve the versions of ``directory`` on 127.0.0.1:``port`` (0: a free port) until
    SIGINT or SIGTERM, polling for new versions every ``poll_s`` seconds.

    The newest version is loaded before the server starts (if there is one yet). Once
    it accepts connections, the bound port is printed and written to ``ready_file``
    (the number and a newline, written atomically). On SIGTERM uvicorn finishes the
    requests in flight, then re-raises the signal: the exit status is -15.
    """
    model = ServedModel(directory)
    server: uvicorn.Server | None = None

    def stop_server() -> None:
        server.should_exit = True

    poller = Poller(model, poll_s, on_error=stop_server)
    model.update()
    sock = listening_socket(port)  # connections queue from now; uvicorn accepts them later
    bound = sock.getsockname()[1]

    @contextlib.asynccontextmanager
    async def lifespan(app):
        poller.start()
        _announce(directory, bound, ready_file)
        yield
        poller.stop()

    config = uvicorn.Config(create_app(model, lifespan), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    if poller.error is not None:
        raise poller.error


def listening_socket(port: int) -> socket.socket:
    """A TCP socket listening on 127.0.0.1:``port`` (0: a free port).

    Its protocol is named (IPPROTO_TCP, not 0): asyncio sets TCP_NODELAY on the
    connections a socket accepts only then, and without it every response waits for a
    delayed ACK (measured: 44 ms a request instead of 0.4 ms).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, port))
    sock.listen(128)
    return sock


def _announce(directory, port: int, ready_file: str | Path | None) -> None:
    print(f"serving the versions of {directory} on http://{HOST}:{port}", flush=True)
    if ready_file is not None:
        write_durably(ready_file, f"{port}\n".encode())
