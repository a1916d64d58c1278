"""Fill the MongoDB hub from a seed file: python seed_mongo.py [PATH] [--uri URI] [--db NAME]
(`coursesync seed-mongo` under this name; server/device/seed_commands.py). It clears the
collections it seeds first (for every user: this is for a demo or test hub) and starts a new hub
epoch."""

from __future__ import annotations

import sys
from typing import Any

from server.console import run
from server.device.seed_commands import seed_mongo


def main(argv: list[str] | None = None, client: Any = None) -> int:
    """`client`: a MongoDB client to seed through instead of one made from the URI (a test's)."""
    return run(seed_mongo, argv, prog="seed_mongo.py", **({"client": client} if client is not None else {}))


if __name__ == "__main__":
    sys.exit(main())
