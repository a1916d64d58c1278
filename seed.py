"""Fill the local SQLite store from a seed file: python seed.py [PATH] [--db FILE] [--reset] [--if-empty]
(`coursesync seed` under this name; server/device/seed_commands.py)."""

from __future__ import annotations

import sys

from server.console import run
from server.device.seed_commands import seed_sqlite


def main(argv: list[str] | None = None) -> int:
    return run(seed_sqlite, argv, prog="seed.py")


if __name__ == "__main__":
    sys.exit(main())
