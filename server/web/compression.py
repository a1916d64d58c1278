"""gzip bodies on the wire between devices and hubs, inflated under a limit: one inflater for
what a hub server is sent and what a hub client is answered."""

from __future__ import annotations

import zlib


class NotInflated(ValueError):
    """The bytes are not gzip, or inflate past the limit. str() completes "The body ..."."""


def inflate(raw: bytes, limit: int) -> bytes:
    """gzip-compressed `raw` inflated, at most `limit` bytes of it: whatever lies past the limit
    is never inflated, so a small body cannot cost more memory than the limit."""
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(raw, limit)
    except zlib.error:
        raise NotInflated("is not valid gzip") from None
    if inflater.unconsumed_tail:
        raise NotInflated(f"inflates to more than {limit} bytes")
    return out
