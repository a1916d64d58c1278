"""The seeders: `coursesync seed` (seed.py) fills the local SQLite store, `coursesync seed-mongo`
(seed_mongo.py) a MongoDB hub. Unlike `flask --app server.api seed`, they build no app: they open
the store themselves, so they can seed a file the settings do not name."""

from __future__ import annotations

from typing import Any

import click

from server.connectors.factory import get_db_connector
from server.connectors.seeding import default_seed_path, seed_from_file, settings_or_none
from server.core.config import redact_uri


@click.command("seed")
@click.argument("path", required=False, default=default_seed_path)
@click.option("--db", help="SQLite file (default: SQLITE_PATH).")
@click.option("--reset", is_flag=True, help="Replace whatever the store holds.")
@click.option("--if-empty", is_flag=True, help="Seed only an empty store, else do nothing.")
def seed_sqlite(path: str, db: str | None, reset: bool, if_empty: bool) -> None:
    """Fill the local SQLite store from a seed file.

    PATH is the seed file (default: data/seed.json, the sample data)."""
    settings = settings_or_none()
    if settings is None:
        raise SystemExit(2)
    where = db or settings.sqlite_path
    done = seed_from_file(get_db_connector("sql", settings, path=where), path, reset=reset, if_empty=if_empty)
    if done is None:
        raise SystemExit(1)
    if done["skipped"]:
        click.echo(f"{where} already holds data; left as it is.")
        return
    if settings.user_id and settings.user_id != done["userId"]:
        click.echo(f"warning: USER_ID={settings.user_id} but the file's user is {done['userId']}", err=True)
    removed = sum(done["removed"].values())
    click.echo(f"seeded {where} for user {done['userId']}: {done['courses']} courses, "
               f"{done['inserted']['records']} records, {done['inserted']['changes']} changes"
               + (f"; removed {removed} rows first" if removed else ""))


@click.command("seed-mongo")
@click.argument("path", required=False, default=default_seed_path)
@click.option("--uri", help="MongoDB URI (default: MONGO_URI).")
@click.option("--db", help="Database name (default: MONGO_DB).")
@click.pass_obj
def seed_mongo(obj: dict[str, Any] | None, path: str, uri: str | None, db: str | None) -> None:
    """Fill the MongoDB hub from a seed file.

    It clears the collections it seeds first (for every user: this is for a demo or test hub) and
    starts a new hub epoch, so devices notice and resynchronise without losing their unsynced
    work. PATH is the seed file (default: data/seed.json, the sample data)."""
    client = (obj or {}).get("client")  # a test's in-memory MongoDB, handed in as the context's object
    settings = settings_or_none()
    if settings is None:
        raise SystemExit(2)
    uri = uri or settings.mongo_uri
    if not uri and client is None:
        click.echo("error: set MONGO_URI or pass --uri", err=True)
        raise SystemExit(2)
    overrides = {"uri": uri or "mongodb://unused", "db_name": db or settings.mongo_db}
    if client is not None:
        overrides["client"] = client
    connector = get_db_connector("mongo", settings, **overrides)
    done = seed_from_file(connector, path, reset=False, wipe_first=True)
    if done is None:
        raise SystemExit(1)
    removed = ", ".join(f"{n} {name}" for name, n in done["removed"].items())
    click.echo(f"hub {redact_uri(uri) or '(in-process)'} db {overrides['db_name']}: removed {removed}; "
               f"inserted {done['inserted']['records']} records and {done['inserted']['changes']} changes "
               f"for user {done['userId']} ({done['courses']} courses); new hub epoch")
