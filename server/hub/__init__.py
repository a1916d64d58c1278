"""The hub app: its protocol routes, bodies, front (the event loop before the threads), waits,
fair shares, limits, per-user stores, retention, purge, compaction."""
