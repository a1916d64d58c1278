"""Push batches cut to their size in bytes, serialised once: the JSON a batch was measured as is
the JSON a hub client sends."""

from __future__ import annotations

from typing import Any

import orjson

# A push's JSON at most (a hub server takes twice that): a batch of large notes is split.
PUSH_BYTES = 4 * 1024 * 1024


class Encoded(list):
    """A batch as `within_bytes` cut it, with the JSON array it was measured as (`json`): a hub
    client sends those bytes rather than serialise the batch a second time."""

    json: bytes


def within_bytes(batch: list[Any], limit: int) -> Encoded:
    """The longest start of `batch` (changes, or records) whose JSON fits in `limit` bytes (at
    least one: the largest valid one is far below any hub's limit). The rest goes in the next call."""
    parts: list[bytes] = []
    total = 0
    for item in batch:
        part = orjson.dumps(item)
        total += len(part) + 1
        if total > limit and parts:
            break
        parts.append(part)
    cut = Encoded(batch[:len(parts)])
    cut.json = b"[" + b",".join(parts) + b"]"
    return cut


def encoded(items: list[Any]) -> bytes:
    """The JSON array of `items`: the bytes `within_bytes` kept, when it cut them."""
    return items.json if isinstance(items, Encoded) else orjson.dumps(items)
