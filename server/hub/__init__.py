"""The hub app, built in app.py: its protocol routes, bodies, front (the event loop before the
threads), waits, fair shares, limits, per-user stores, retention, purge, compaction, metrics and
commands. It may import core, web and connectors; never sync or the device app."""
