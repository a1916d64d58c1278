"""The seeding procedure shared by seed.py, seed_mongo.py and `flask seed`: read a seed file,
check it whole (seeding.py), write it to a store."""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path
from typing import Any

from server.connectors.base import DatabaseConnector
from server.core.errors import StoreUnavailable
from server.core.seeding import SeedError, seed_changes, validate_seed


def default_seed_path() -> str:
    """The sample data: data/seed.json of this checkout, else the copy an installed package
    carries (share/coursesync/seed.json under the environment), else data/seed.json here."""
    for candidate in (Path(__file__).resolve().parents[2] / "data" / "seed.json",
                      Path(sysconfig.get_path("data")) / "share" / "coursesync" / "seed.json"):
        if candidate.is_file():
            return str(candidate)
    return "data/seed.json"


def load_seed_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(c)))
    except FileNotFoundError:
        raise SeedError([f"{path}: no such file"]) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise SeedError([f"{path}: not valid JSON ({exc})"]) from None


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


def settings_or_none():
    """The settings, or None after printing the bad one (the seeders then exit with 2)."""
    from server.core.config import ConfigError, load_settings

    try:
        return load_settings()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def seed_from_file(connector: DatabaseConnector, path: str, **options) -> dict | None:
    """The seeders' common run: validate the whole file, then connect and seed. Problems are
    printed to stderr (every bad field by its path) and give None; nothing is written then."""
    try:
        seed = validate_seed(load_seed_file(path))  # the whole file, before touching the store
        connector.connect()
        return seed_store(connector, seed, **options)
    except SeedError as exc:
        print(f"error: {path} is not a valid seed file; nothing was written:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
    except (StoreNotEmpty, StoreUnavailable) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
    finally:
        connector.close()
    return None
