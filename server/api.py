"""The composition root: the app factory builds the settings, the store, the hub opener and the
sync service, then registers the blueprints. Route modules hold only routes; tests hand their
doubles to `create_app` as arguments."""

from __future__ import annotations

import atexit
import logging
from typing import Callable

from flask import Flask, request

from server.connectors.base import DatabaseConnector
from server.connectors.factory import get_db_connector
from server.core.config import Settings, load_settings
from server.core.errors import StoreUnavailable
from server.device import commands as device_commands
from server.device import metrics, page, pairing, routes, sync_routes
from server.hub import commands as hub_commands
from server.sync.wiring import build_sync
from server.web import http

MAX_BODY_BYTES = 1024 * 1024


def create_app(settings: Settings | None = None, *, store: DatabaseConnector | None = None,
               hub: Callable[[], DatabaseConnector] | None = None, start_sync: bool = True,
               sync_wait_seconds: float = 10.0, testing: bool = False) -> Flask:
    """The app. Every argument defaults to what the environment says (`flask --app server.api`
    calls it with none): `settings` from load_settings(); `store`, a connected store of
    DB_CONNECTOR that closes at exit; `hub`, something that opens a connected hub in this
    process (otherwise the settings' hub, opened where rounds run); `start_sync=False` keeps
    the background worker from starting; `sync_wait_seconds`, how long POST /api/v1/sync waits
    for a running round."""
    given = settings = settings or load_settings()
    store = _connected_store(settings) if store is None else store
    settings, hub_from = pairing.settings_in_force(given, store)  # a hub kept by pairing, unless set
    app = Flask(__name__)
    app.testing = testing
    app.config.update(SETTINGS=settings, HUB_FROM=hub_from, MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
                      SYNC_WAIT_SECONDS=sync_wait_seconds, PUBLIC_PATHS=page.PUBLIC_PATHS)
    app.extensions["store"] = store
    service = build_sync(settings, store, hub=hub, start=start_sync)
    if service is not None:
        app.extensions["sync"] = service
    if settings.sync_push_on_write:
        app.after_request(_push_on_write(app))
    app.extensions["operations"] = [*routes.OPERATIONS, *sync_routes.OPERATIONS, *pairing.OPERATIONS]
    http.install(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(sync_routes.bp)
    app.register_blueprint(page.bp)
    pairing.install(app, given)
    metrics.install_device(app, store, service)
    device_commands.install(app)
    hub_commands.install(app)
    return app


WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))


def _push_on_write(app: Flask):
    """After a write the API answered with success, ask the sync service (the one there is now:
    pairing starts one in the running app) to push it soon."""
    def after(resp):
        service = app.extensions.get("sync")
        if resp.status_code < 300 and request.method in WRITES and request.path != "/api/v1/sync" and \
                service is not None:
            service.nudge()
        return resp
    return after


def create_hub_app(settings: Settings | None = None, *, store: DatabaseConnector | None = None,
                   testing: bool = False) -> Flask:
    """The hub server (`python -m server --hub`): the hub protocol (server/hub/routes.py) and
    health, in front of the store DB_CONNECTOR names, with its registry of device tokens."""
    from server.connectors.factory import registry_for
    from server.hub import bodies as hub_bodies
    from server.hub import limits as hub_limits
    from server.hub import pairing as hub_pairing
    from server.hub import routes as hub_routes
    from server.hub import waiters as hub_waiters
    from server.hub.stores import HubStores

    settings = settings or load_settings()
    store = _connected_store(settings) if store is None else store
    app = Flask(__name__)
    app.testing = testing
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=hub_bodies.MAX_BODY_BYTES)
    stores = HubStores(settings, store)
    app.extensions.update(store=store, registry=registry_for(store), hub_stores=stores, operations=[],
                          in_flight=hub_limits.InFlight(), waiters=hub_waiters.Waiters(),
                          refusals=hub_limits.Refusals(settings.hub_max_refusals_per_minute))
    atexit.register(stores.close)
    http.install(app, browser_facing=False)
    app.add_url_rule("/api/v1/health", "health", hub_routes.health)
    app.register_blueprint(hub_routes.bp)
    app.register_blueprint(hub_pairing.bp)
    app.after_request(hub_bodies.compress)
    metrics.install_hub(app)
    device_commands.install(app)
    hub_commands.install(app)
    return app


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
