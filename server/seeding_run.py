"""The seeding procedure shared by seed.py, seed_mongo.py and `flask seed`."""

from __future__ import annotations

from server.connectors.base import DatabaseConnector
from server.seeding import seed_changes


class StoreNotEmpty(RuntimeError):
    pass


def seed_store(connector: DatabaseConnector, seed: dict, *, reset: bool, if_empty: bool = False,
               wipe_first: bool = False) -> dict:
    """Write a seed that `validate_seed` accepted. Returns what was done.
    `wipe_first` clears the store unconditionally (the hub seeder); `reset` allows seeding over
    existing data by clearing it; otherwise a non-empty store is refused (StoreNotEmpty), or
    skipped quietly with `if_empty`."""
    connector.user_id = seed["user"]["id"]
    removed: dict[str, int] = {}
    if not connector.is_empty() and not (reset or wipe_first):
        if if_empty:
            return {"skipped": True, "userId": seed["user"]["id"]}
        raise StoreNotEmpty("The store already holds data; pass --reset to replace it.")
    if reset or wipe_first:
        removed = connector.wipe()
        connector.user_id = seed["user"]["id"]
    origin, changes = seed_changes(seed)
    result = connector.apply_changes(changes)
    connector.set_owner(seed["user"]["id"])
    return {
        "skipped": False, "userId": seed["user"]["id"], "origin": origin, "removed": removed,
        "inserted": {"records": result["applied"], "changes": len(changes)},
        "courses": len(seed["courses"]),
    }
