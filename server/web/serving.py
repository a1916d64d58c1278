"""How `python -m server` serves its app with waitress: limits read from the machine, and the
errors waitress answers by itself in the API's envelope.

- poll(), not select(): select() cannot watch a descriptor at or above 1,024, and a process
  holding that many files (connections, store files) died with "filedescriptor out of range".
- The open-file limit is raised to the hard limit at start, and the connection limit kept below
  it with room for the store's files, the sync child's pipes and the logs: beyond it waitress
  stops accepting (connections wait in the kernel's backlog) instead of failing.
- A body over the app's own limit is refused by waitress from its Content-Length (or as it
  streams in) before it is read or spooled to disk; the answer is the API's 413, with a trace id
  and a log line. Then the write side is shut and what the client still sends is read and
  dropped (at most DRAIN_BYTES): a client still writing its body reads the 413 instead of a
  reset (Python's urllib, Node's fetch).
- Idle and half-sent requests cost no thread (waitress buffers a request before a thread sees
  it), and a connection silent for `channel_timeout` seconds is closed.
"""

from __future__ import annotations

import resource
import socket
import time
from typing import Any, Protocol

from waitress.channel import HTTPChannel
from waitress.task import ErrorTask

from server.web.http import log_answer, refusal, too_large_message, trace_id

THREADS = 8
MAX_CONNECTIONS = 10_000
DRAIN_BYTES = 32 * 1024 * 1024  # dropped after a 413 while the client still sends (and 30 s at most)
RESERVED_FILES = 64 + 4 * THREADS  # store files (a WAL file pair per thread), pipes, logs, the listener


def open_file_limit(want: int = 65_536) -> int:
    """The soft limit on open files, raised to the hard one (capped at `want` or 65,536, the
    larger) when it can be."""
    cap = max(want, 65_536)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = cap if hard == resource.RLIM_INFINITY else min(hard, cap)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return cap if soft == resource.RLIM_INFINITY else soft


def waitress_settings(max_body_bytes: int, files: int | None = None) -> dict[str, Any]:
    files = open_file_limit() if files is None else files
    return {
        "threads": THREADS, "ident": "coursesync", "asyncore_use_poll": True,
        "connection_limit": max(8, min(MAX_CONNECTIONS, files - RESERVED_FILES)),
        "channel_timeout": 30, "cleanup_interval": 10,
        "max_request_body_size": max_body_bytes,
    }


class EnvelopeErrorTask(ErrorTask):
    """Waitress's own refusals (a body too large, a malformed request line or chunk) as the
    API's error envelope, not its text page, with a trace id and the request's log line."""

    def execute(self) -> None:
        started, e = time.perf_counter(), self.request.error
        trace = trace_id(self.request.headers.get("X_REQUEST_ID"))
        message = too_large_message(self.channel.server.adj.max_request_body_size) if e.code == 413 else \
            f"{e.reason}: {str(e.body)[:200]}"
        body, headers = refusal(e.code, message, trace)
        self.status = f"{e.code} {e.reason}"
        self.response_headers.extend(headers)
        self.set_close_on_finish()
        self.content_length = len(body)
        if e.code == 413:
            self.channel.refused_body = True
        log_answer(self.request.command or "-", self.request.path or "-", e.code, started, trace)  # before a byte goes
        self.write(body)


class Channel(HTTPChannel):
    """Waitress's channel, closed gracefully after a 413: the answer is flushed, the write side
    shut, and what the client still sends of the refused body read and dropped."""

    error_task_class = EnvelopeErrorTask
    refused_body = False
    draining: int | None = None  # bytes still to drop, once draining

    def handle_close(self) -> None:
        if self.refused_body and self.draining is None and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)
            except OSError:
                return super().handle_close()
            self.draining, self.will_close = DRAIN_BYTES, False  # closed by the reads below, or by the
            return  # server's maintenance once the channel is silent for channel_timeout
        super().handle_close()

    def readable(self) -> bool:
        return True if self.draining is not None else super().readable()

    def writable(self) -> bool:
        return self.will_close if self.draining is not None else super().writable()

    def handle_read(self) -> None:
        if self.draining is None:
            return super().handle_read()
        try:
            data = self.recv(self.adj.recv_bytes)  # the client's end closes the channel (handle_close)
        except OSError:
            return super().handle_close()
        self.draining -= len(data)
        if data and self.draining <= 0:
            super().handle_close()


class Server(Protocol):
    """What `python -m server` needs of a server it built: run until interrupted."""

    def run(self) -> None: ...


def create(app: Any, host: str, port: int, max_body_bytes: int) -> Server:
    """A waitress server for `app`, not yet running (raises OSError when it cannot listen)."""
    from waitress import create_server

    server = create_server(app, host=host, port=port, **waitress_settings(max_body_bytes))
    server.channel_class = Channel
    return server
