"""The device app: the PWA's API, the sync routes, the sync page, metrics and commands."""
