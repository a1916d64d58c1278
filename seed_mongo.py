"""Fill the MongoDB hub from a seed file: python seed_mongo.py [PATH] [--uri URI] [--db NAME]

It clears the collections it seeds first (for every user: this is for a demo or test hub) and
starts a new hub epoch, so devices notice and resynchronise without losing their unsynced work."""

from __future__ import annotations

import argparse
import sys

from server.config import redact_uri
from server.connectors.factory import get_db_connector
from server.seeding_run import seed_from_file, settings_or_none


def main(argv: list[str] | None = None, client=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", nargs="?", default="data/seed.json", help="seed file (default: data/seed.json)")
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


if __name__ == "__main__":
    sys.exit(main())
