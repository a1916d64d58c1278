"""What a hub server is sent and what it answers, on the wire: a JSON object, gzip-compressed
or not, bounded before it costs (bytes inflated, values parsed), its fields checked by name;
answers over a kilobyte gzip-compressed for a client that takes it."""

from __future__ import annotations

import gzip
from typing import Any

from flask import request

from server.core.errors import BadBody, UnsupportedMedia, ValidationError
from server.hub.fair import pace
from server.web.compression import NotInflated, inflate
from server.web.http import parse_json

MAX_BATCH = 2000  # changes per push or pull
# A body as sent and after decompression. A device sends pushes of at most PUSH_BYTES of JSON
# (the sync engine splits larger batches), so this leaves it twice that.
MAX_BODY_BYTES = 8 * 1024 * 1024
# Arrays, objects and elements in one body: a valid push of MAX_BATCH changes holds some tens
# per change. Counted before parsing, so that a small body of `[]` cannot cost gigabytes.
MAX_BODY_VALUES = 100 * MAX_BATCH
MAX_CURSOR_ORIGINS = 100_000
LARGE_BODY = 256 * 1024  # as sent or inflated: parsed giving way to other users' requests


def json_object() -> dict[str, Any]:
    """The JSON object of the request, gzip-compressed or not (at most MAX_BODY_BYTES inflated)."""
    raw = request.get_data(cache=False)
    if len(raw) > LARGE_BODY:  # a heavy user's large body waits while a light user's request is in
        pace()
    if request.headers.get("Content-Encoding", "").lower() == "gzip":
        try:
            raw = inflate(raw, MAX_BODY_BYTES)
        except NotInflated as exc:
            raise BadBody(f"The body {exc}.") from None
    if request.mimetype != "application/json":
        raise UnsupportedMedia("Send the body as application/json.")
    body = parse_json(raw, MAX_BODY_VALUES, give_way=pace if len(raw) > LARGE_BODY else None)
    if not isinstance(body, dict):
        raise BadBody("The body must be a JSON object.")
    return body


def only_keys(body: dict, allowed: set[str]) -> None:
    extra = sorted(set(body) - allowed)
    if extra:
        raise ValidationError({k: "unknown field" for k in extra[:20]})


def origin_or_none(body: dict, key: str, problems: dict) -> str | None:
    value = body.get(key)
    if value is not None and not (isinstance(value, str) and 0 < len(value) <= 128):
        problems[key] = "must be an origin id or null"
    return value


def cursor_of(body: dict, problems: dict) -> dict[str, int]:
    cursor = body.get("cursor", {})
    if not isinstance(cursor, dict) or len(cursor) > MAX_CURSOR_ORIGINS or not all(
            isinstance(k, str) and type(v) is int and 0 <= v < 2**53 for k, v in cursor.items()):
        problems["cursor"] = "must map origin ids to sequence numbers"
    return cursor


def compress(resp):
    """Answers over a kilobyte go gzip-compressed to a client that takes it (a pull of 500
    changes shrinks about tenfold)."""
    if (resp.status_code == 200 and not resp.direct_passthrough and "Content-Encoding" not in resp.headers
            and "gzip" in request.headers.get("Accept-Encoding", "")):
        data = resp.get_data()
        if len(data) > 1024:
            resp.set_data(gzip.compress(data, compresslevel=5))
            resp.headers["Content-Encoding"] = "gzip"
            resp.headers["Vary"] = "Accept-Encoding"
    return resp
