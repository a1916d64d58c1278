"""How `python -m server --hub` serves: uvicorn's event loop holds the connections, the hub's
Flask app runs on a fixed pool of threads (a2wsgi), and a waiting device costs no thread.

Why not waitress, as the device server: waitress runs each request on a thread until it is
answered, so a thousand devices holding POST /hub/v1/wait open would need a thousand threads.
Here a wait is an asyncio event (hub_waiters.py); the hub's checks still all run in Flask:
- every request's body is read here first, whole and bounded (MAX_BODY_BYTES, a deadline, and a
  cap on how many large bodies are read at once), so a slow sender never holds a thread;
- a wait goes through Flask like any call (the token, the body, the store); when there is
  nothing to pull yet, the view leaves a waiter in the request's scope, and this front holds the
  request until the waiter is woken, then sends it through Flask again: a revoked token then
  answers 401, news answers `changed: true`, and the time up answers `changed: false`;
- the client going away ends the wait."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import orjson
import uvicorn
from a2wsgi import WSGIMiddleware

from server.http import HTTP_CODES, STANDARD_HEADERS, error_body, too_large_message
from server.hub_waiters import Watcher, source_for
from server.serving import MAX_CONNECTIONS, THREADS, open_file_limit

WAIT_PATH = "/hub/v1/wait"
BODY_SECONDS = 60  # to send a whole body
LARGE_BODY = 256 * 1024  # bodies larger than this are read a few at a time
LARGE_AT_ONCE = 16
RESERVED_FILES = 96


class HubFront:
    """The ASGI application in front of the hub's Flask app."""

    def __init__(self, app: Any, *, threads: int = THREADS):
        self.app = app
        self.wsgi = WSGIMiddleware(app, workers=threads)
        self.waiters = app.extensions["waiters"]
        self.max_body = app.config["MAX_CONTENT_LENGTH"]
        self.watcher: Watcher | None = None
        self._large: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    # --- life -----------------------------------------------------------------------------
    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.waiters.loop = loop
        self._large = asyncio.Semaphore(LARGE_AT_ONCE)
        store = self.app.extensions["store"]
        self.watcher = Watcher(self.waiters, source_for(store), self.app.extensions["registry"].revoked_among,
                               store.driver_errors)
        self.watcher.start()

    def stop(self) -> None:
        self.waiters.close_all()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    # --- requests -------------------------------------------------------------------------
    async def _http(self, scope, receive, send) -> None:
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and not declared.isdigit():
            return await _refuse(send, 400, "The Content-Length header is not a number.")
        if declared is not None and int(declared) > self.max_body:
            return await _refuse(send, 413, too_large_message(self.max_body))
        large = declared is None or int(declared) > LARGE_BODY
        if large:
            await self._large.acquire()
        try:
            try:
                body = await asyncio.wait_for(self._read(receive), BODY_SECONDS)
            except asyncio.TimeoutError:
                return await _refuse(send, 408, f"The body did not arrive within {BODY_SECONDS} s.")
        finally:
            if large:
                self._large.release()
        if body is None:
            return  # the client went away, or sent more than the limit (answered)
        if isinstance(body, int):
            return await _refuse(send, 413, too_large_message(self.max_body))
        if scope["path"] == WAIT_PATH and scope["method"] == "POST":
            await self._wait(scope, body, receive, send)
        else:
            await self._app(scope, body, send)

    async def _read(self, receive) -> bytes | int | None:
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return size
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    async def _app(self, scope, body: bytes, send) -> None:
        """Through Flask, with the body read already (and its length said, chunked or not)."""
        headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
        scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        sent = False

        async def replay():
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.wsgi(scope, replay, send)

    async def _wait(self, scope, body: bytes, receive, send) -> None:
        state: dict[str, Any] = {"final": False}
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        gone: asyncio.Task | None = None
        try:
            while True:
                answer: list = []
                state.pop("park", None)

                async def keep(message):
                    answer.append(message)

                await self._app({**scope, "coursesync.wait": state}, body, keep)
                park = state.pop("park", None)
                if park is None:
                    for message in answer:
                        await send(message)
                    return
                waiter = park["waiter"]
                if deadline is None:
                    deadline = loop.time() + park["seconds"]
                    gone = loop.create_task(_disconnected(receive))
                woke = loop.create_task(waiter.event.wait())
                done, _ = await asyncio.wait({woke, gone}, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                woke.cancel()
                self.waiters.remove(waiter)
                if gone in done:
                    return
                if not done or waiter.reason in ("superseded", "closing"):
                    state["final"] = True  # checked once more, then answered whatever it finds
        finally:
            if gone is not None:
                gone.cancel()


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _refuse(send, status: int, message: str) -> None:
    body = orjson.dumps(error_body(HTTP_CODES.get(status, "bad_request"), message))
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"connection", b"close"), *((k.lower().encode(), v.encode()) for k, v in STANDARD_HEADERS)]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, front: HubFront):
        super().__init__(config)
        self.front = front

    async def shutdown(self, sockets=None) -> None:
        self.front.waiters.close_all()  # waits answer now rather than hold the shutdown up
        await super().shutdown(sockets)


class HubServer:
    """A hub server on a bound socket, not yet running (creating it raises OSError when it
    cannot listen)."""

    def __init__(self, app: Any, host: str, port: int, files: int | None = None):
        files = open_file_limit() if files is None else files
        self.front = HubFront(app)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # Said TCP outright: asyncio turns Nagle off only on sockets whose protocol reads
        # IPPROTO_TCP, and with it on, an answer's body waited for the client's delayed ACK of
        # its head: 40 ms on every call.
        self.sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock.bind((host, port))
        except OSError:
            self.sock.close()
            raise
        config = uvicorn.Config(
            self.front, lifespan="on", log_config=None, access_log=False, http="h11", loop="asyncio",
            interface="asgi3", backlog=2048, timeout_keep_alive=30, timeout_graceful_shutdown=5,
            server_header=False, h11_max_incomplete_event_size=64 * 1024,
            # Past this many connections new requests get 503 at once instead of taking files
            # the store needs; connections beyond the file limit wait in the kernel's backlog.
            limit_concurrency=max(8, min(MAX_CONNECTIONS, files - RESERVED_FILES)))
        self.server = _Server(config, self.front)
        self.port = self.sock.getsockname()[1]

    def run(self) -> None:
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True
