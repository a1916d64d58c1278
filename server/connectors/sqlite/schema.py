"""The SQLite store's schema: numbered steps, applied once each and recorded in the file, and
the marks (application_id, user_version, our tables) that tell this server's file apart."""

from __future__ import annotations

import sqlite3

# Numbered, idempotent schema steps. Never edit a shipped step; append a new one.
SCHEMA_STEPS: list[tuple[int, str]] = [
    (1, """
        CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS records (
            user_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL,
            course_id TEXT,
            fields TEXT NOT NULL, clocks TEXT NOT NULL,  -- clocks: {"c": field clocks, "b": bases}
            deleted INTEGER NOT NULL DEFAULT 0, dclock TEXT NOT NULL DEFAULT '',
            dbase TEXT NOT NULL DEFAULT '', v INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (user_id, kind, key)) WITHOUT ROWID;
        CREATE INDEX IF NOT EXISTS records_by_course ON records (user_id, course_id, kind);
        CREATE INDEX IF NOT EXISTS records_live ON records (user_id, deleted, kind);
        CREATE TABLE IF NOT EXISTS changes (
            user_id TEXT NOT NULL, origin TEXT NOT NULL, seq INTEGER NOT NULL,
            hlc TEXT NOT NULL, kind TEXT NOT NULL, record_id TEXT NOT NULL, course_id TEXT,
            op TEXT NOT NULL CHECK (op IN ('upsert', 'delete')),
            fields TEXT NOT NULL, bases TEXT NOT NULL,
            PRIMARY KEY (user_id, origin, seq)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS origins (
            user_id TEXT NOT NULL, origin TEXT NOT NULL, max_seq INTEGER NOT NULL,
            PRIMARY KEY (user_id, origin)) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS conflicts (
            user_id TEXT NOT NULL, id TEXT NOT NULL, detected_at TEXT NOT NULL,
            body TEXT NOT NULL, PRIMARY KEY (user_id, id));
        CREATE INDEX IF NOT EXISTS conflicts_newest ON conflicts (user_id, detected_at);
        CREATE TABLE IF NOT EXISTS sync_state (
            user_id TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL,
            PRIMARY KEY (user_id, key));
    """),
    # Every write rewrote this index's entry (one more page per commit) for one reader, the live
    # listing, which the primary key (user_id, kind, ...) serves as well.
    (2, "DROP INDEX IF EXISTS records_live;"),
    # Changes refused at the door (changes.check_change), kept with the reason for a person.
    (3, """
        CREATE TABLE IF NOT EXISTS quarantine (
            user_id TEXT NOT NULL, id TEXT NOT NULL, received_at TEXT NOT NULL,
            body TEXT NOT NULL, PRIMARY KEY (user_id, id));
        CREATE INDEX IF NOT EXISTS quarantine_newest ON quarantine (user_id, received_at);
    """),
    # A hub's devices: who may sync, as whom (a token's hash only), and which device owns which origin.
    (4, """
        CREATE TABLE IF NOT EXISTS hub_devices (
            device_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, name TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT);
        CREATE TABLE IF NOT EXISTS hub_origins (
            user_id TEXT NOT NULL, origin TEXT NOT NULL, device_id TEXT NOT NULL,
            PRIMARY KEY (user_id, origin)) WITHOUT ROWID;
    """),
    # Where each device of a hub is: the cursor of its last pull, and when it was last seen.
    (5, """
        CREATE TABLE IF NOT EXISTS hub_positions (
            device_id TEXT PRIMARY KEY, user_id TEXT NOT NULL, pulled TEXT NOT NULL, seen_at REAL NOT NULL);
        CREATE INDEX IF NOT EXISTS hub_positions_user ON hub_positions (user_id);
    """),
    # History compacted per origin: its changes up to `floor` are dropped from the log (held all
    # the same; a reader below the floor is sent the records instead, sequences.behind).
    (6, "ALTER TABLE origins ADD COLUMN floor INTEGER NOT NULL DEFAULT 0;"),
    # The store's origin was kept under the meta key "device_id" (its name when the file format
    # was set): it is the origin of the store's own changes, not a hub's device, so named so.
    (7, "UPDATE meta SET key = 'origin' WHERE key = 'device_id';"),
    # A hub's invitations (`hub invite`): a device's one-time pairing code (its hash only), until
    # when it may be exchanged for a token, and when the token it gave was first used (then spent).
    (8, """
        CREATE TABLE IF NOT EXISTS hub_invitations (
            code_hash TEXT PRIMARY KEY, device_id TEXT NOT NULL UNIQUE, user_id TEXT NOT NULL,
            expires_at REAL NOT NULL, exchanged_at REAL, used_at REAL);
    """),
]

# Written into the file's header ("CoSy"), so another program's SQLite file is told apart
# before anything is written to it; user_version holds the newest schema step applied.
APPLICATION_ID = 0x436F5379
OUR_TABLES = {"meta", "records", "changes", "schema_steps"}


def apply_schema_steps(conn: sqlite3.Connection) -> list[int]:
    """Inside a transaction: apply the steps not yet recorded; returns those applied."""
    applied: list[int] = []
    conn.execute("CREATE TABLE IF NOT EXISTS schema_steps (step INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    done = {r[0] for r in conn.execute("SELECT step FROM schema_steps")}
    for step, sql in SCHEMA_STEPS:
        if step in done:
            continue
        for statement in filter(str.strip, sql.split(";")):
            conn.execute(statement)
        conn.execute("INSERT INTO schema_steps VALUES (?, datetime('now'))", (step,))
        applied.append(step)
    if applied:
        conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        conn.execute(f"PRAGMA user_version = {max(step for step, _ in SCHEMA_STEPS)}")
    return applied
