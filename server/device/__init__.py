"""The device app, built in app.py: the PWA's API, the sync routes, the sync page, metrics and
commands. It may import core, web, connectors and sync; never the hub app."""
