"""Fill the MongoDB hub from a seed file: python seed_mongo.py [PATH] [--uri URI] [--db NAME]
(the same as `coursesync seed-mongo`; server/device/seed_commands.py). It clears the collections it
seeds first (for every user: this is for a demo or test hub) and starts a new hub epoch."""

from __future__ import annotations

import sys

from server.device.seed_commands import seed_mongo as main

if __name__ == "__main__":
    sys.exit(main())
