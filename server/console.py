"""coursesync: the command an installed package gives (pip install .), one for every entry point.

  coursesync serve             the device server, on the store the settings name (python -m server)
  coursesync serve --hub       a hub server instead (python -m server --hub)
  coursesync seed [PATH] ...   fill the local SQLite store from a seed file (seed.py)
  coursesync seed-mongo ...    fill a MongoDB hub from a seed file (seed_mongo.py)
  coursesync sync ...          a sync round, the status (flask --app server.api sync)
  coursesync hub ...           the hub's devices and history (flask --app server.api hub)

Settings come from the environment and a .env file in the working directory (docs/settings.md);
`coursesync COMMAND --help` says more."""

from __future__ import annotations

import sys

FLASK_GROUPS = ("sync", "hub")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help", "help"):
        print(__doc__, file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from server.__main__ import main as serve

        return serve(rest)
    if command in ("seed", "seed-mongo"):
        from server.device.seed_commands import seed_mongo, seed_sqlite

        seeder = seed_sqlite if command == "seed" else seed_mongo
        return seeder(rest, prog=f"coursesync {command}")
    if command in FLASK_GROUPS:
        return _flask(args)
    print(f"coursesync: no command {command!r}.\n\n{__doc__}", file=sys.stderr)
    return 2


def _flask(args: list[str]) -> int:
    """The app's own command groups (server/device/commands.py), run as `flask --app server.api` runs them."""
    from flask.cli import FlaskGroup

    from server.api import create_app

    group = FlaskGroup(create_app=create_app, add_default_commands=False)
    try:
        group.main(args, prog_name="coursesync")
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0
