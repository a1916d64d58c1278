"""Fill the local SQLite store from a seed file: python seed.py [PATH] [--db FILE] [--reset] [--if-empty]
(the same as `coursesync seed`; server/device/seed_commands.py)."""

from __future__ import annotations

import sys

from server.device.seed_commands import seed_sqlite as main

if __name__ == "__main__":
    sys.exit(main())
