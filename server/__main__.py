"""python -m server: start the API with waitress, configured from the environment / `.env`.
python -m server --hub: start a hub server instead (the hub protocol in front of the store that
DB_CONNECTOR names; devices sync through it with HUB_URL and a token). It is `coursesync serve`
(server/console.py) under this name."""

from __future__ import annotations

import sys

from server.console import run, serve


def main(argv: list[str] | None = None) -> int:
    return run(serve, argv, prog="python -m server")


if __name__ == "__main__":
    sys.exit(main())
