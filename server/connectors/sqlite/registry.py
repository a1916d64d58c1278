"""The hub's device registry in its SQLite file (tables hub_devices, hub_origins, hub_positions),
in the file's writer queue."""

from __future__ import annotations

import json
import sqlite3

from server.connectors.registry import (
    RELAYED,
    SEEN_EVERY_SECONDS,
    Device,
    DeviceRegistry,
    Invitation,
    Position,
    new_token,
    token_hash,
)
from server.connectors.sqlite.atomic import Transaction
from server.connectors.sqlite.atomic import atomic as transaction
from server.connectors.sqlite.pool import Connections
from server.core.times import iso_now


class SqlRegistry(DeviceRegistry):
    def __init__(self, pool: Connections):
        self.pool = pool  # the connections of the hub's (connected, migrated) SQLite file

    def _atomic(self) -> Transaction:
        # In the file's writer queue, in turn with the stores' writes: in SQLite's busy loop it
        # lost every race to a large push written in turns, for seconds.
        return transaction(self.pool.get, lock=self.pool.write_lock)

    def _insert(self, device: Device, hashed: str) -> None:
        with self._atomic() as conn:
            conn.execute("INSERT INTO hub_devices VALUES (?, ?, ?, ?, ?, NULL)",
                         (device.device_id, device.user_id, device.name, hashed, device.created_at))

    def find(self, token: str) -> Device | None:
        row = self.pool.get().execute(
            "SELECT device_id, user_id, name, created_at, revoked_at FROM hub_devices WHERE token_hash = ?",
            (token_hash(token),)).fetchone()
        return Device(*row) if row else None

    def devices(self, user_id: str | None = None) -> list[Device]:
        rows = self.pool.get().execute(
            "SELECT device_id, user_id, name, created_at, revoked_at FROM hub_devices "
            "WHERE ? IS NULL OR user_id = ? ORDER BY created_at, device_id", (user_id, user_id))
        return [Device(*r) for r in rows]

    def revoke(self, token_or_device: str) -> list[Device]:
        with self._atomic() as conn:
            rows = conn.execute(
                "UPDATE hub_devices SET revoked_at = ? WHERE revoked_at IS NULL AND (device_id = ? OR token_hash = ?) "
                "RETURNING device_id, user_id, name, created_at, revoked_at",
                (iso_now(), token_or_device, token_hash(token_or_device))).fetchall()
        return [Device(*r) for r in rows]

    def origins_held(self, user_id: str, holder: str) -> int:
        return self.pool.get().execute("SELECT COUNT(*) FROM hub_origins WHERE user_id = ? AND device_id = ?",
                                          (user_id, holder)).fetchone()[0]

    def take_relayed(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> bool | None:
        with self._atomic() as conn:  # BEGIN IMMEDIATE: the count and the update are one step
            if limit is not None and self._held(conn, user_id, device_id) >= limit:
                return None
            return conn.execute("UPDATE hub_origins SET device_id = ? WHERE user_id = ? AND origin = ? AND "
                                "substr(device_id, 1, ?) = ?",
                                (device_id, user_id, origin, len(RELAYED), RELAYED)).rowcount == 1

    @staticmethod
    def _held(conn: sqlite3.Connection, user_id: str, holder: str) -> int:
        return conn.execute("SELECT COUNT(*) FROM hub_origins WHERE user_id = ? AND device_id = ?",
                            (user_id, holder)).fetchone()[0]

    def revoked_among(self, device_ids: list[str]) -> set[str]:
        out: set[str] = set()
        for i in range(0, len(device_ids), 500):
            part = device_ids[i:i + 500]
            out.update(r[0] for r in self.pool.get().execute(
                f"SELECT device_id FROM hub_devices WHERE revoked_at IS NOT NULL AND device_id IN "
                f"({','.join('?' * len(part))})", part))
        return out

    def note_pulled(self, device: Device, cursor: dict[str, int], now: float) -> None:
        pulled = json.dumps(cursor, sort_keys=True)
        with self._atomic() as conn:
            conn.execute("INSERT INTO hub_positions VALUES (?, ?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
                         "pulled = excluded.pulled, seen_at = excluded.seen_at "
                         "WHERE pulled != excluded.pulled OR seen_at < ?",
                         (device.device_id, device.user_id, pulled, now, now - SEEN_EVERY_SECONDS))

    def positions(self, user_id: str) -> dict[str, Position]:
        rows = self.pool.get().execute("SELECT device_id, pulled, seen_at FROM hub_positions WHERE user_id = ?",
                                       (user_id,))
        return {device: Position(json.loads(pulled), seen) for device, pulled, seen in rows}

    def owners(self, user_id: str) -> dict[str, str]:
        return dict(self.pool.get().execute("SELECT origin, device_id FROM hub_origins WHERE user_id = ?",
                                            (user_id,)))

    def origin_owner(self, user_id: str, origin: str) -> str | None:
        row = self.pool.get().execute("SELECT device_id FROM hub_origins WHERE user_id = ? AND origin = ?",
                                         (user_id, origin)).fetchone()
        return row[0] if row else None

    def device_counts(self, seen_since: float) -> dict[str, int]:
        conn = self.pool.get()
        active = conn.execute("SELECT COUNT(*) FROM hub_devices WHERE revoked_at IS NULL").fetchone()[0]
        seen = conn.execute("SELECT COUNT(*) FROM hub_positions WHERE seen_at >= ?", (seen_since,)).fetchone()[0]
        return {"active": active, "seen": seen}

    def claim_origin(self, user_id: str, origin: str, device_id: str, limit: int | None = None) -> str | None:
        with self._atomic() as conn:  # BEGIN IMMEDIATE: the count and the claim are one step
            row = conn.execute("SELECT device_id FROM hub_origins WHERE user_id = ? AND origin = ?",
                               (user_id, origin)).fetchone()
            if row is not None:
                return row[0]
            if limit is not None and self._held(conn, user_id, device_id) >= limit:
                return None
            conn.execute("INSERT INTO hub_origins VALUES (?, ?, ?)", (user_id, origin, device_id))
            return device_id

    # --- invitations (hub/pairing.py) ---------------------------------------------------------
    def _insert_invited(self, device: Device, hashed: str, code_hashed: str, expires_at: float) -> None:
        with self._atomic() as conn:
            conn.execute("INSERT INTO hub_devices VALUES (?, ?, ?, ?, ?, NULL)",
                         (device.device_id, device.user_id, device.name, hashed, device.created_at))
            conn.execute("INSERT INTO hub_invitations VALUES (?, ?, ?, ?, NULL, NULL)",
                         (code_hashed, device.device_id, device.user_id, expires_at))

    def exchange(self, code: str, now: float) -> tuple[str, Device | None, str | None]:
        with self._atomic() as conn:  # the checks and the new token as one step
            row = conn.execute(
                "SELECT d.device_id, d.user_id, d.name, d.created_at, d.revoked_at, i.expires_at, i.used_at "
                "FROM hub_invitations i JOIN hub_devices d ON d.device_id = i.device_id WHERE i.code_hash = ?",
                (token_hash(code),)).fetchone()
            if row is None:
                return "unknown", None, None
            device, expires_at, used_at = Device(*row[:5]), row[5], row[6]
            if device.revoked_at:
                return "revoked", device, None
            if used_at is not None:
                return "used", device, None
            if expires_at <= now:
                return "expired", device, None
            token = new_token()
            conn.execute("UPDATE hub_devices SET token_hash = ? WHERE device_id = ?",
                         (token_hash(token), device.device_id))
            conn.execute("UPDATE hub_invitations SET exchanged_at = ? WHERE device_id = ?", (now, device.device_id))
            return "paired", device, token

    def note_used(self, device_id: str, now: float) -> None:
        if self.pool.get().execute("SELECT 1 FROM hub_invitations WHERE device_id = ? AND used_at IS NULL AND "
                                   "exchanged_at IS NOT NULL", (device_id,)).fetchone() is None:
            return  # most calls: no write at all
        with self._atomic() as conn:
            conn.execute("UPDATE hub_invitations SET used_at = ? WHERE device_id = ? AND used_at IS NULL",
                         (now, device_id))

    def invitations(self, user_id: str | None = None) -> dict[str, Invitation]:
        rows = self.pool.get().execute(
            "SELECT device_id, expires_at, exchanged_at, used_at FROM hub_invitations WHERE ? IS NULL OR user_id = ?",
            (user_id, user_id))
        return {r[0]: Invitation(*r) for r in rows}
