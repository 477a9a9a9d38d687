"""Running the app under uvicorn: in the foreground for ``cuma serve``, or in a thread for tests.

Graceful shutdown is uvicorn's: on SIGINT/SIGTERM (or ``should_exit``) it stops accepting connections,
lets open requests finish for up to ``graceful_s`` seconds, then runs the app's lifespan exit, which
drains the micro-batcher's queue.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time

import uvicorn
from fastapi import FastAPI

from cuma.serve.config import ServeConfig


def uvicorn_config(app: FastAPI, config: ServeConfig, log_level: str = "info") -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_level=log_level,
        timeout_graceful_shutdown=int(config.request_timeout_s) + 5,
    )


def run_server(app: FastAPI, config: ServeConfig) -> None:
    """Serve until interrupted; Ctrl-C or SIGTERM finish in-flight requests first."""
    uvicorn.Server(uvicorn_config(app, config)).run()


class ServerThread:
    """The app under uvicorn in a background thread, on a socket bound before it starts.

    Binding first makes ``port=0`` safe (the kernel picks a free port, no race) and lets `start` return
    only once the server accepts connections. Use as a context manager, or call `start` and `stop`.
    """

    def __init__(self, app: FastAPI, config: ServeConfig, log_level: str = "warning") -> None:
        self.server = uvicorn.Server(uvicorn_config(app, config, log_level))
        self.config = config
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self._socket is None:
            raise RuntimeError("the server is not started")
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    def start(self, timeout_s: float = 30.0) -> ServerThread:
        self._socket = socket.create_server((self.config.host, self.config.port))
        self._thread = threading.Thread(
            target=lambda: asyncio.run(self.server.serve(sockets=[self._socket])),
            name="cuma-serve",
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url} within {timeout_s} s")
            time.sleep(0.01)
        return self

    def stop(self, timeout_s: float | None = None) -> None:
        """Ask for a graceful shutdown and wait until it is over."""
        if self._thread is None:
            return
        self.server.should_exit = True
        self._thread.join(timeout_s if timeout_s is not None else self.config.request_timeout_s + 10)
        if self._thread.is_alive():
            raise RuntimeError(f"the server at {self.url} did not shut down in time")
        self._socket.close()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
