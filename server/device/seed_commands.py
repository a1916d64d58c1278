"""The seeders' commands: seed.py and `coursesync seed` (the local SQLite store), seed_mongo.py and
`coursesync seed-mongo` (a MongoDB hub)."""

from __future__ import annotations

import argparse
import sys

from server.connectors.factory import get_db_connector
from server.connectors.seeding import default_seed_path, seed_from_file, settings_or_none
from server.core.config import redact_uri

SQLITE_DOC = "Fill the local SQLite store from a seed file."
MONGO_DOC = """Fill the MongoDB hub from a seed file.

It clears the collections it seeds first (for every user: this is for a demo or test hub) and
starts a new hub epoch, so devices notice and resynchronise without losing their unsynced work."""


def seed_sqlite(argv: list[str] | None = None, prog: str = "seed.py") -> int:
    """Fill the local SQLite store from a seed file (seed.py, `coursesync seed`)."""
    parser = argparse.ArgumentParser(prog=prog, description=SQLITE_DOC)
    parser.add_argument("path", nargs="?", default=default_seed_path(), help="seed file (default: data/seed.json)")
    parser.add_argument("--db", help="SQLite file (default: SQLITE_PATH)")
    parser.add_argument("--reset", action="store_true", help="replace whatever the store holds")
    parser.add_argument("--if-empty", action="store_true", help="seed only an empty store, else do nothing")
    args = parser.parse_args(argv)
    settings = settings_or_none()
    if settings is None:
        return 2
    connector = get_db_connector("sql", settings, **({"path": args.db} if args.db else {}))
    done = seed_from_file(connector, args.path, reset=args.reset, if_empty=args.if_empty)
    if done is None:
        return 1
    if done["skipped"]:
        print(f"{connector.path} already holds data; left as it is.")
        return 0
    if settings.user_id and settings.user_id != done["userId"]:
        print(f"warning: USER_ID={settings.user_id} but the file's user is {done['userId']}", file=sys.stderr)
    removed = sum(done["removed"].values())
    print(f"seeded {connector.path} for user {done['userId']}: {done['courses']} courses, "
          f"{done['inserted']['records']} records, {done['inserted']['changes']} changes"
          + (f"; removed {removed} rows first" if removed else ""))
    return 0



def seed_mongo(argv: list[str] | None = None, client=None, prog: str = "seed_mongo.py") -> int:
    """Fill a MongoDB hub from a seed file (seed_mongo.py, `coursesync seed-mongo`)."""
    parser = argparse.ArgumentParser(prog=prog, description=MONGO_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default=default_seed_path(), help="seed file (default: data/seed.json)")
    parser.add_argument("--uri", help="MongoDB URI (default: MONGO_URI)")
    parser.add_argument("--db", help="database name (default: MONGO_DB)")
    args = parser.parse_args(argv)
    settings = settings_or_none()
    if settings is None:
        return 2
    uri = args.uri or settings.mongo_uri
    if not uri and client is None:
        print("error: set MONGO_URI or pass --uri", file=sys.stderr)
        return 2
    overrides = {"uri": uri or "mongodb://unused", "db_name": args.db or settings.mongo_db}
    if client is not None:
        overrides["client"] = client
    connector = get_db_connector("mongo", settings, **overrides)
    done = seed_from_file(connector, args.path, reset=False, wipe_first=True)
    if done is None:
        return 1
    removed = ", ".join(f"{n} {name}" for name, n in done["removed"].items())
    print(f"hub {redact_uri(uri) or '(in-process)'} db {overrides['db_name']}: removed {removed}; "
          f"inserted {done['inserted']['records']} records and {done['inserted']['changes']} changes "
          f"for user {done['userId']} ({done['courses']} courses); new hub epoch")
    return 0

