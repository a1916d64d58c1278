"""The composition root. Each app builds itself from the settings and a connected store
(server/device/app.py, server/hub/app.py); this module fills in what the environment says: the
settings, and the store DB_CONNECTOR names, connected and closed at exit. `flask --app
server.api` runs `create_app` with no arguments; tests hand their doubles to it as arguments."""

from __future__ import annotations

import atexit
import logging
from typing import Callable

from flask import Flask

from server.connectors.base import DatabaseConnector
from server.connectors.factory import get_db_connector
from server.core.config import Settings, load_settings
from server.core.errors import StoreUnavailable
from server.device import app as device_app
from server.sync.hub import Hub
from server.web.cli import InApp


def create_app(settings: Settings | None = None, *, store: DatabaseConnector | None = None,
               hub: Callable[[], Hub] | None = None, start_sync: bool = True,
               sync_wait_seconds: float = 30.0, testing: bool = False) -> Flask:
    """The device app. Every argument defaults to what the environment says: `settings` from
    load_settings(); `store`, a connected store of DB_CONNECTOR that closes at exit; `hub`,
    something that opens a connected hub in this process (otherwise the settings' hub, opened
    where rounds run); `start_sync=False` keeps the background worker from starting;
    `sync_wait_seconds`, the deadline of POST /api/v1/sync (it
    answers the report of a round that started after the request, or 409 sync_running when none ended in time).

    `flask --app server.api` loads this one app, so the hub's commands (`flask --app server.api
    hub ...`, documented for a hub's operator) come along: they run in a hub app built over the
    same store when one of them is invoked."""
    settings = settings or load_settings()
    store = _connected_store(settings) if store is None else store
    app = device_app.create_app(settings, store, hub=hub, start_sync=start_sync,
                                sync_wait_seconds=sync_wait_seconds, testing=testing)
    from server.hub.commands import hub_cli

    app.cli.add_command(InApp(hub_cli, lambda: create_hub_app(settings, store=store, testing=testing)))
    return app


def create_hub_app(settings: Settings | None = None, *, store: DatabaseConnector | None = None,
                   testing: bool = False) -> Flask:
    """The hub server's app (`python -m server --hub`), in front of the store DB_CONNECTOR names
    (or `store`), with its registry of device tokens."""
    from server.hub.app import create_hub_app as hub_app

    settings = settings or load_settings()
    return hub_app(settings, _connected_store(settings) if store is None else store, testing=testing)


def _connected_store(settings: Settings) -> DatabaseConnector:
    """The store DB_CONNECTOR names, connected, and closed when the process exits."""
    store = get_db_connector(settings.db_connector, settings)
    try:
        store.connect()
    except StoreUnavailable as exc:  # at start-up, the file is named (the store's own errors name none)
        if settings.db_connector != "sql" or settings.sqlite_path in exc.message:
            raise
        raise StoreUnavailable(f"{exc.message} (SQLITE_PATH={settings.sqlite_path})") from exc
    atexit.register(store.close)
    return store


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
