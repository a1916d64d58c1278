"""Fill the local SQLite store from a seed file: python seed.py [PATH] [--reset] [--if-empty]"""

from __future__ import annotations

import argparse
import sys

from server.connectors.factory import get_db_connector
from server.seeding_run import seed_from_file, settings_or_none


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", nargs="?", default="data/seed.json", help="seed file (default: data/seed.json)")
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


if __name__ == "__main__":
    sys.exit(main())
