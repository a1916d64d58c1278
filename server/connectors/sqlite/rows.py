"""How the SQLite store's rows are laid out and read back as record states and changes."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from server.core.changes import Change
from server.core.records import CHILD_KINDS

loads = orjson.loads  # stored JSON is read on every request's path; orjson decodes it ~3x faster


def compact_json(value: Any) -> str:
    """Compact JSON text for storage (key order is irrelevant: stored values are compared
    decoded). orjson: encoding is on every write's path and it is about ten times faster."""
    return orjson.dumps(value).decode()


# --- row layout ---------------------------------------------------------------------------
LOAD_CHUNK = 400  # keys per lookup query: 2 parameters each, well under SQLite's limit of 32,766
RECORD_COLS = "kind, id, course_id, fields, clocks, deleted, dclock, dbase, v, key"
CHANGE_COLS = "origin, seq, hlc, kind, record_id, course_id, op, fields, bases"
CHILD_MARKS = ", ".join("?" * len(CHILD_KINDS))  # one placeholder per kind of a course's children


def row_to_state(row: sqlite3.Row) -> dict[str, Any]:
    meta = loads(row[4])
    return {
        "kind": row[0], "id": row[1], "courseId": row[2], "fields": loads(row[3]),
        "clocks": meta["c"], "bases": meta["b"], "deleted": bool(row[5]),
        "dclock": row[6], "dbase": row[7], "v": row[8],
    }


def row_to_change(row: sqlite3.Row) -> Change:
    return {
        "origin": row[0], "seq": row[1], "hlc": row[2], "kind": row[3], "id": row[4],
        "courseId": row[5], "op": row[6], "fields": loads(row[7]), "bases": loads(row[8]),
    }


def origins_column(conn: sqlite3.Connection, user_id: str, column: str, origins: set[str]) -> dict[str, int]:
    """origin -> `column` of the origins table (foreign origins' tops and floors), where above 0,
    for those of `origins` it has a row for; in chunks under SQLite's limit on bound parameters."""
    wanted, out = sorted(origins), dict[str, int]()
    for i in range(0, len(wanted), 500):
        part = wanted[i:i + 500]
        out.update(conn.execute(f"SELECT origin, {column} FROM origins WHERE user_id = ? AND {column} > 0 AND "
                                f"origin IN ({','.join('?' * len(part))})", (user_id, *part)))
    return out
