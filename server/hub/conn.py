"""The hub server's connections (front.py serves the requests on them): uvicorn's h11
protocol, made deaf to what is not a request.

- A connection that has sent nothing yet is a `Doorstep`: its transport and a timer, no more
  (uvicorn's protocol and h11's state are made at its first byte). Ten thousand silent sockets
  cost about half the objects they did, and the cyclic collector walks them all now and then:
  a full collection with 10,000 of them held the event loop 100 to 400 ms.
- A request's head must arrive whole within `header_seconds` of the connection (or of its first
  byte, on a kept-alive one): a socket that stays silent, or trickles a head, is closed. Each
  connection's time is drawn between half and all of it, so that a crowd opened at once is not
  closed at once (10,000 closes in one turn of the event loop held it for 0.4 s). Between
  requests uvicorn's keep-alive timeout (`idle_seconds`) closes a connection that sends nothing.
- Only requests count against what requests need: uvicorn's own limit counted every connection,
  idle ones too, and answered 503 to everyone once strangers held enough silent sockets. Here,
  past `limit` connections, the one idle longest (no request in it) is closed to make room.
- A refusal sent while the client is still sending its body (413, a bad token on a large body)
  is followed by a graceful close: the write side is shut, and what still comes is read and
  dropped (at most DRAIN_BYTES, for at most DRAIN_SECONDS), so that the client, still writing,
  reads the answer instead of a reset."""

from __future__ import annotations

import asyncio
import functools
import random
from collections import OrderedDict
from typing import Any, Callable, Protocol, cast

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

DRAIN_BYTES = 32 * 1024 * 1024
DRAIN_SECONDS = 10.0


class Connection(Protocol):
    def close_idle(self) -> None: ...


class ConnectionBook:
    """Every open connection of the front, and which of them have no request in them now
    (oldest first): those are closed first when the front is full."""

    def __init__(self, limit: int, header_seconds: float):
        self.limit, self.header_seconds = limit, header_seconds
        self.draw = random.Random()
        self.idle: OrderedDict[Connection, None] = OrderedDict()
        self.open = 0
        self.evicted = 0

    def head_seconds(self) -> float:
        """A connection's time for a head: between half and all of header_seconds."""
        return self.header_seconds * self.draw.uniform(0.5, 1.0)

    def opened(self, conn: Connection) -> bool:
        """Room for `conn` (closing the connection idle longest if need be); False when every
        connection is in a request, and `conn` must go."""
        self.open += 1
        if self.open > self.limit:
            if not self.idle:
                self.open -= 1
                return False
            oldest, _ = self.idle.popitem(last=False)
            self.evicted += 1
            oldest.close_idle()
        self.idle[conn] = None
        return True

    def busy(self, conn: Connection) -> None:
        self.idle.pop(conn, None)

    def rested(self, conn: Connection) -> None:
        self.idle.pop(conn, None)
        self.idle[conn] = None

    def handed(self, before: Connection, after: Connection) -> None:
        """`before`'s connection goes on as `after` (a Doorstep's, at its first byte)."""
        self.idle.pop(before, None)
        self.idle[after] = None

    def closed(self, conn: Connection) -> None:
        self.open -= 1
        self.idle.pop(conn, None)


class Doorsteps:
    """uvicorn's protocol factory for the front: each connection starts as a Doorstep, and all
    of them make their HubProtocol alike (one maker, not one per connection)."""

    def __init__(self, book: ConnectionBook):
        self.book = book
        self.make: Callable[[], HubProtocol] | None = None

    def __call__(self, config: Any, server_state: Any, app_state: dict, _loop: Any = None) -> Doorstep:
        if self.make is None:
            self.make = functools.partial(HubProtocol, config, server_state, app_state, _loop, book=self.book)
        return Doorstep(self)


class Doorstep(asyncio.Protocol):
    """A connection that has sent nothing yet: counted in the book, closed at its head's time,
    and at its first byte handed to a HubProtocol, which goes on with the same deadline."""

    __slots__ = ("doorsteps", "transport", "timer", "counted")

    def __init__(self, doorsteps: Doorsteps):
        self.doorsteps = doorsteps
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        book = self.doorsteps.book
        self.counted = book.opened(self)
        if not self.counted:
            self.transport.abort()  # every connection is in a request: this one waits its turn elsewhere
            return
        self.timer = asyncio.get_running_loop().call_later(book.head_seconds(), self.close_idle)

    def data_received(self, data: bytes) -> None:
        timer, self.timer = self.timer, None
        if timer is None or not self.counted:
            return  # closed already
        timer.cancel()
        assert self.doorsteps.make is not None  # made with this doorstep
        conn = self.doorsteps.make()
        self.counted = False
        self.doorsteps.book.handed(self, conn)
        self.transport.set_protocol(conn)
        conn.handed(self.transport, timer.when())
        conn.data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.counted:
            self.counted = False
            self.doorsteps.book.closed(self)

    def close_idle(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.transport.close()


class HubProtocol(H11Protocol):
    """uvicorn's h11 protocol with a head timeout, room made by closing idle connections, and
    a graceful close after a refusal (see the module)."""

    def __init__(self, config: Any, server_state: Any, app_state: dict, _loop: Any = None, *,
                 book: ConnectionBook):
        super().__init__(config, server_state, app_state, _loop)
        self.book = book
        self.head_timer: asyncio.TimerHandle | None = None
        self.in_request = False
        self.draining: int | None = None  # bytes still to drop after a refusal, or None
        self.counted = False
        self.graceful: GracefulTransport | None = None

    def handed(self, transport: asyncio.Transport, due: float) -> None:
        """The connection, from its Doorstep (counted in the book already): its head is due by
        the loop's time `due`."""
        self.graceful = GracefulTransport(transport, self)
        # It stands in for the transport: what it does not do itself goes to the one it wraps.
        super().connection_made(cast(asyncio.Transport, self.graceful))
        self.counted = True
        self.head_timer = self.loop.call_at(due, self.head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_head_timer()
        if self.counted:
            self.counted = False
            self.book.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.draining is not None:
            self.draining -= len(data)
            if self.draining <= 0:
                self.transport.close()
            return
        if not self.in_request and self.head_timer is None:  # the first byte of the next request
            self.head_timer = self.loop.call_later(self.book.head_seconds(), self.head_timed_out)
        super().data_received(data)
        self._note_request()

    def on_response_complete(self) -> None:
        self.in_request = False
        if self.counted:
            self.book.rested(self)
        super().on_response_complete()
        self._note_request()  # a pipelined request may have started

    def _note_request(self) -> None:
        if not self.in_request and self.cycle is not None and not self.cycle.response_complete:
            self.in_request = True
            self._stop_head_timer()
            self.book.busy(self)

    def _stop_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def head_timed_out(self) -> None:
        self.head_timer = None
        if not self.in_request:
            self.close_idle()

    def close_idle(self) -> None:
        """Close a connection with no request in it (silent, still sending a head, or being
        drained after a refusal)."""
        self._stop_head_timer()
        if self.graceful is not None:
            self.graceful.close_now()

    def still_sending(self) -> bool:
        """Whether the client is sending a request body that has not all arrived."""
        return self.conn.their_state is h11.SEND_BODY

    def start_draining(self) -> None:
        """The answer is out and the client still sends: what it sends is dropped, and the
        connection may be closed for room as an idle one is."""
        self.draining = DRAIN_BYTES
        if self.counted:
            self.book.rested(self)


class GracefulTransport:
    """The connection's transport, closed gracefully while the client is still sending a body:
    the answer goes out, then the write side is shut, and what the client still sends is dropped
    until it stops (or DRAIN_BYTES or DRAIN_SECONDS pass)."""

    def __init__(self, inner: asyncio.Transport, protocol: HubProtocol):
        self.inner, self.protocol = inner, protocol
        self.closing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def is_closing(self) -> bool:
        return self.closing or self.inner.is_closing()

    def close_now(self) -> None:
        self.closing = True
        self.inner.close()

    def close(self) -> None:
        if self.inner.is_closing():
            return
        if self.closing:
            if self.protocol.draining is not None and self.protocol.draining <= 0:
                self.inner.close()
            return
        self.closing = True
        if not self.protocol.still_sending() or not self.inner.can_write_eof():
            self.inner.close()
            return
        self.protocol.start_draining()
        self.inner.write_eof()
        self.inner.resume_reading()  # uvicorn stopped reading once it held 64 KiB nobody read
        self.protocol.loop.call_later(DRAIN_SECONDS, self.inner.close)
