"""How `python -m server --hub` serves: uvicorn's event loop holds the connections (hub_conn.py),
the hub's Flask app runs on a fixed pool of threads (a2wsgi), and a waiting device costs no thread.

Why not waitress, as the device server: waitress runs each request on a thread until it is
answered, so a thousand devices holding POST /hub/v1/wait open would need a thousand threads.
Here a wait is an asyncio event (hub_waiters.py); the hub's checks still all run in Flask.
Before a request reaches a thread, the front
- knows who sends it: the device its token names (hub_door.py), so that a request with no valid
  token is answered at once, its body never read, and holds nothing a valid one needs;
- reads its body whole and bounded: at most MAX_BODY_BYTES, at HUB_BODY_MIN_BYTES_PER_SECOND or
  faster after HUB_BODY_GRACE_SECONDS (a stranger's request, to a path anyone may ask, must come
  whole within HUB_HEADER_SECONDS), and a large one within its user's share of the bytes held
  (hub_fair.Budget);
- runs it on a thread within its user's share of them, users taking turns (hub_fair.Lanes), and
  at most MAX_IN_FLIGHT at once per device;
- a wait goes through Flask like any call (the token, the body, the store); when there is
  nothing to pull yet, the view leaves a waiter in the request's scope, and this front holds the
  request until the waiter is woken, then sends it through Flask again: a revoked token then
  answers 401, news answers `changed: true`, and the time up answers `changed: false`; the client
  going away ends the wait.
What the front refuses itself it answers in the API's envelope, with a trace id and a log line."""

from __future__ import annotations

import asyncio
import gc
import socket
import time
from typing import Any

import uvicorn
from a2wsgi import WSGIMiddleware
from werkzeug.exceptions import HTTPException

from server.connectors.factory import watcher_for
from server.connectors.registry import Device
from server.hub.conn import ConnectionBook, Doorsteps
from server.hub.door import Door, Refused, door_for
from server.hub.fair import LANE_KEY, Budget, Lanes
from server.hub.limits import MAX_IN_FLIGHT
from server.hub.waiters import Watcher
from server.web.http import log_answer, refusal, too_large_message, trace_id
from server.web.serving import THREADS, open_file_limit

WAIT_PATH = "/hub/v1/wait"
LARGE_BODY = 256 * 1024  # a larger body is read within its user's share of the bytes held
RESERVED_FILES = 96
BACKLOG = 128  # connections the kernel holds for the front to accept
ACCEPT_BATCH = 16  # connections accepted in one turn of the event loop, at most
PUBLIC = ""  # the lane of requests without a device: health, the document, metrics, unknown paths
USER_THREADS, PUBLIC_THREADS = 2, 2  # of THREADS
USER_QUEUE, PUBLIC_QUEUE = 64, 512  # requests waiting for a thread, past which more are refused


class Asked:
    """One request as the front sees it."""

    __slots__ = ("method", "path", "headers", "trace", "started")

    def __init__(self, scope: dict):
        self.method, self.path = scope["method"], scope["path"]
        self.headers = dict(scope["headers"])
        self.trace = trace_id(self.headers.get(b"x-request-id", b"").decode("latin-1"))
        self.started = time.perf_counter()


class HubFront:
    """The ASGI application in front of the hub's Flask app."""

    def __init__(self, app: Any, *, threads: int = THREADS):
        self.app = app
        self.wsgi = WSGIMiddleware(app, workers=threads)
        self.waiters = app.extensions["waiters"]
        self.max_body = app.config["MAX_CONTENT_LENGTH"]
        settings = app.config["SETTINGS"]
        self.min_rate, self.grace = settings.hub_body_min_bytes_per_second, settings.hub_body_grace_seconds
        self.stranger_seconds = settings.hub_header_seconds
        self.lanes = app.extensions["lanes"] = Lanes(threads, lambda lane: PUBLIC_THREADS if lane == PUBLIC
                                                     else USER_THREADS)
        self.budget = Budget(2 * self.max_body, 32 * self.max_body)
        self.door: Door = door_for(app)
        self.in_flight: dict[str, int] = {}
        self.watcher: Watcher | None = None

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
        store = self.app.extensions["store"]
        self.watcher = Watcher(self.waiters, watcher_for(store), self.app.extensions["registry"].revoked_among,
                               store.driver_errors)
        self.watcher.start()

    def stop(self) -> None:
        self.waiters.close_all()
        self.door.close()
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None

    # --- requests -------------------------------------------------------------------------
    async def _http(self, scope, receive, send) -> None:
        asked = Asked(scope)
        try:
            declared = _declared(asked.headers, self.max_body)
            device = await self.door.who(asked.path, asked.headers.get(b"authorization", b"").decode("latin-1"))
            lane = device.user_id if device else PUBLIC
            self._enter(device, lane)
        except Refused as no:
            return await self._refuse(asked, send, no)
        counted = [device]

        async def answer(message) -> None:
            # The device's count drops as its answer ends: its next request on the connection
            # may come before this coroutine has finished.
            if message["type"] == "http.response.body" and not message.get("more_body") and counted:
                self._leave(counted.pop())
            await send(message)

        self.lanes.arrive(lane)
        try:
            await self._serve(asked, scope, receive, answer, lane, declared)
        finally:
            self.lanes.depart(lane)
            if counted:
                self._leave(counted.pop())

    def _enter(self, device: Device | None, lane: str) -> None:
        if lane == PUBLIC:
            if self.lanes.queued(PUBLIC) >= PUBLIC_QUEUE:
                raise Refused(503, "busy", "The hub is busy with requests that bring no device's token; try again.",
                              retry_after=5)
            return
        assert device is not None  # every lane but the public one is a device's
        if self.in_flight.get(device.device_id, 0) >= MAX_IN_FLIGHT or self.lanes.queued(lane) >= USER_QUEUE:
            raise Refused(429, "too_many_requests",
                          f"This device has {MAX_IN_FLIGHT} requests at the hub already; wait for them.",
                          retry_after=1)
        self.in_flight[device.device_id] = self.in_flight.get(device.device_id, 0) + 1

    def _leave(self, device: Device | None) -> None:
        if device is not None:
            left = self.in_flight.pop(device.device_id) - 1
            if left:
                self.in_flight[device.device_id] = left

    async def _serve(self, asked: Asked, scope, receive, send, lane: str, declared: int | None) -> None:
        held = 0 if declared is not None and declared <= LARGE_BODY else declared or self.max_body
        if held:
            await self.budget.reserve(lane, held)
        try:
            body = await self._read(receive, lane)
            if isinstance(body, Refused):
                return await self._refuse(asked, send, body)
            if body is None:
                return  # the client went away
            if asked.path == WAIT_PATH and asked.method == "POST":
                await self._wait(scope, lane, body, receive, send)
            else:
                async with self.lanes.slot(lane):
                    await self._app({**scope, LANE_KEY: lane}, body, send)
        finally:
            if held:
                self.budget.release(lane, held)

    async def _read(self, receive, lane: str) -> bytes | Refused | None:
        """The body, whole: None if the client went away, a Refused if it is too large or comes
        too slowly (slower than the rate after the grace; a stranger's within the head's time).
        A heavy user's body is not read while a light user's request is in (Lanes.give_way)."""
        loop = asyncio.get_running_loop()
        start, chunks, size, stranger = loop.time(), [], 0, lane == PUBLIC
        while True:
            if not stranger:
                start += await self.lanes.give_way(lane)  # the hub's own pause does not count
            due = start + (self.stranger_seconds if stranger else self.grace + size / self.min_rate)
            try:
                message = await asyncio.wait_for(receive(), max(due - loop.time(), 0.001))
            except asyncio.TimeoutError:
                return Refused(408, "request_timeout", (
                    "The request did not arrive whole within HUB_HEADER_SECONDS." if stranger else
                    f"The body came slower than {self.min_rate} bytes a second after {self.grace:g} s "
                    "(HUB_BODY_MIN_BYTES_PER_SECOND, HUB_BODY_GRACE_SECONDS); send it again."))
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return Refused(413, "payload_too_large", too_large_message(self.max_body))
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

    async def _wait(self, scope, lane: str, body: bytes, receive, send) -> None:
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

                async with self.lanes.slot(lane):  # each pass through the app is a request of its user
                    await self._app({**scope, "coursesync.wait": state, LANE_KEY: lane}, body, keep)
                park = state.pop("park", None)
                if park is None:
                    for message in answer:
                        await send(message)
                    return
                # Its answer stands if the time runs out with no news: kept at its size (a
                # serialiser's buffer is 4 KB), it spares 10,000 waits a second pass a minute.
                kept = [{**m, "body": bytes(bytearray(m["body"]))} if "body" in m else m for m in answer]
                answer.clear()
                waiter = park["waiter"]
                if deadline is None:
                    deadline = loop.time() + park["seconds"]
                    gone = loop.create_task(_disconnected(receive))
                assert gone is not None  # made with the deadline, at the first park
                woke = loop.create_task(waiter.event.wait())
                self.lanes.depart(lane)  # parked: no request of its user's in the front meanwhile
                try:
                    done, _ = await asyncio.wait({woke, gone}, timeout=max(0.0, deadline - loop.time()),
                                                 return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self.lanes.arrive(lane)
                woke.cancel()
                self.waiters.remove(waiter)
                if gone in done:
                    return
                if not done and waiter.reason is None:  # nothing came (a revocation wakes it too)
                    for message in kept:
                        await send(message)
                    return
                if not done or waiter.reason in ("superseded", "closing"):
                    state["final"] = True  # checked once more, then answered whatever it finds
        finally:
            if gone is not None:
                gone.cancel()

    async def _refuse(self, asked: Asked, send, no: Refused) -> None:
        """A refusal of the front's own, in the envelope, then a graceful close (the body, if
        any is still coming, is not read: hub_conn drains it)."""
        body, headers = refusal(no.status, no.message, asked.trace, no.code)
        raw = [(k.lower().encode(), v.encode()) for k, v in headers]
        raw += [(b"content-length", str(len(body)).encode()), (b"connection", b"close")]
        if no.retry_after:
            raw.append((b"retry-after", str(no.retry_after).encode()))
        log_answer(asked.method, asked.path, no.status, asked.started, asked.trace)  # before a byte goes
        if asked.path.startswith("/hub/v1/"):
            self.app.extensions["metrics"].answered(self._call(asked), no.status, no.code)
        await send({"type": "http.response.start", "status": no.status, "headers": raw})
        await send({"type": "http.response.body", "body": body})

    def _call(self, asked: Asked) -> str | None:
        """The protocol call a path names (hubPush, ...), as the app's own count says it."""
        try:
            endpoint, _ = self.app.url_map.bind("hub").match(asked.path, asked.method)
        except HTTPException:
            return None
        return endpoint.split(".")[-1]


def _declared(headers: dict[bytes, bytes], max_body: int) -> int | None:
    """The body's declared length (None: chunked), refused when it is not a number or over the limit."""
    declared = headers.get(b"content-length")
    if declared is None:
        return None
    if not declared.isdigit():
        raise Refused(400, "bad_request", "The Content-Length header is not a number.")
    if int(declared) > max_body:
        raise Refused(413, "payload_too_large", too_large_message(max_body))
    return int(declared)


async def _disconnected(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, front: HubFront):
        super().__init__(config)
        self.front = front

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets)
        # asyncio listens with the backlog it is given and accepts as many in one turn of its
        # loop: the kernel keeps its longer queue, the loop takes a few at a time.
        for sock in sockets or ():
            sock.listen(BACKLOG)

    async def shutdown(self, sockets=None) -> None:
        self.front.waiters.close_all()  # waits answer now rather than hold the shutdown up
        await super().shutdown(sockets)


class HubServer:
    """A hub server on a bound socket, not yet running (creating it raises OSError when it
    cannot listen)."""

    def __init__(self, app: Any, host: str, port: int, files: int | None = None):
        files = open_file_limit() if files is None else files
        settings = app.config["SETTINGS"]
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
        # Past this many connections the one idle longest is closed for a new one; the open
        # files left are the store's. Connections beyond the file limit wait in the backlog.
        self.book = ConnectionBook(max(8, min(settings.hub_max_connections, files - RESERVED_FILES)),
                                   settings.hub_header_seconds)
        # The backlog is also how many connections asyncio accepts in one turn of its loop: with
        # 2,048, a crowd reconnecting as fast as it was closed held every request's turn for
        # 80 ms and more (bench_fair); the kernel's short queue also slows such a crowd down.
        # uvicorn is given ACCEPT_BATCH, the turn's share; startup sets the kernel's queue back
        # to BACKLOG (each accepted connection costs the loop some 60 us, 128 of them 8 ms).
        config = uvicorn.Config(
            self.front, lifespan="on", log_config=None, access_log=False, loop="asyncio",
            # uvicorn calls `http` as a factory; its annotation asks for the class itself.
            http=Doorsteps(self.book),  # type: ignore[arg-type]
            interface="asgi3", backlog=ACCEPT_BATCH,
            timeout_keep_alive=settings.hub_idle_seconds, timeout_graceful_shutdown=5, server_header=False,
            h11_max_incomplete_event_size=64 * 1024)
        self.server = _Server(config, self.front)
        self.port = self.sock.getsockname()[1]

    def run(self) -> None:
        # What the process holds now (modules, the app) lives as long as it does: frozen, the
        # cyclic collector no longer walks it. Unfrozen, each full collection walked it all,
        # holding the interpreter 30 ms and more, about every 5 s beside large pushes (bench_fair).
        gc.freeze()
        self.server.run(sockets=[self.sock])

    def stop(self) -> None:
        self.server.should_exit = True
