"""Entity tags of API records (RFC 9110): what a client sends back in If-Match so that a write
made on a stale read is refused rather than applied."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from server.core.records import CHILD_PLURALS


def etag_of(record: dict[str, Any]) -> str:
    """A strong ETag of a record's own fields. A course's lectures and assignments carry their
    own ETags, so editing a lecture does not invalidate what a client holds of its course."""
    own = {k: v for k, v in record.items() if k not in CHILD_PLURALS}
    digest = hashlib.sha256(orjson.dumps(own, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f'"{digest[:24]}"'


def etag_matches(if_match: list[str] | None, record: dict[str, Any]) -> bool:
    """RFC 9110 If-Match: absent matches, `*` matches any existing record, otherwise one of the
    listed tags must equal the record's (weak tags never match a strong comparison)."""
    if if_match is None or "*" in if_match:
        return True
    return etag_of(record) in if_match
