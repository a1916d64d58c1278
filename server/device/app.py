"""The device app, built from the settings and a connected store (server/api.py opens the store
the settings name; a test hands in its own): the PWA's API, the sync routes and page, the sync
service and its push after each write, metrics and the device's commands. And how a device
server listens and what it starts once the port is its own (`coursesync serve`)."""

from __future__ import annotations

import logging
from typing import Callable

from flask import Flask, Response, request

from server.connectors.base import DatabaseConnector
from server.core.config import Settings
from server.device import commands, metrics, page, pairing, routes, sync_routes
from server.sync.hub import Hub
from server.sync.service import SyncService
from server.sync.wiring import build_sync, start_worker
from server.web import http, serving

MAX_BODY_BYTES = 1024 * 1024
WRITES = frozenset(("POST", "PUT", "PATCH", "DELETE"))


def create_app(settings: Settings, store: DatabaseConnector, *, hub: Callable[[], Hub] | None = None,
               start_sync: bool = True, sync_wait_seconds: float = 30.0, testing: bool = False) -> Flask:
    """The device app on `store`. `hub` opens a connected hub in this process (otherwise the
    settings' hub, opened where rounds run); `start_sync=False` keeps the background worker
    from starting; `sync_wait_seconds`, the deadline of POST /api/v1/sync (it answers the report
    of a round that started after the request, or 409 sync_running when none ended in time)."""
    given = settings
    settings, hub_from = pairing.settings_in_force(given, store)  # a hub kept by pairing, unless set
    app = Flask("server.api")  # the name Flask's own log lines have always carried
    app.testing = testing
    app.config.update(SETTINGS=settings, HUB_FROM=hub_from, MAX_CONTENT_LENGTH=MAX_BODY_BYTES,
                      SYNC_WAIT_SECONDS=sync_wait_seconds, PUBLIC_PATHS=page.PUBLIC_PATHS)
    app.extensions["store"] = store
    service = build_sync(settings, store, hub=hub, start=start_sync)
    if service is not None:
        app.extensions["sync"] = service
    if settings.sync_push_on_write:
        app.after_request(push_on_write(app))
    app.extensions["operations"] = [*routes.OPERATIONS, *sync_routes.OPERATIONS, *pairing.OPERATIONS]
    http.install(app)
    app.register_blueprint(routes.bp)
    app.register_blueprint(sync_routes.bp)
    app.register_blueprint(page.bp)
    pairing.install(app, given)
    metrics.install(app, store, service)
    commands.install(app)
    return app


def push_on_write(app: Flask) -> Callable[[Response], Response]:
    """After a write the API answered with success, ask the sync service (the one there is now:
    pairing starts one in the running app) to push it soon."""
    def after(resp: Response) -> Response:
        service: SyncService | None = app.extensions.get("sync")
        if service is not None and resp.status_code < 300 and request.method in WRITES \
                and request.path != "/api/v1/sync":
            service.nudge()
        return resp
    return after


def listening(app: Flask, settings: Settings) -> serving.Server:
    """Waitress, bound to the settings' port (OSError when it cannot be)."""
    return serving.create(app, settings.host, settings.port, app.config["MAX_CONTENT_LENGTH"])


def started(app: Flask, settings: Settings) -> None:
    """Once the port is ours: the sync worker, and the line that says what serves."""
    if "sync" in app.extensions:
        start_worker(app.extensions["sync"])
    store = app.extensions["store"]
    logging.getLogger("server").info(
        "serving on http://%s:%s store=%s user=%s device=%s hub=%s", settings.host, settings.port,
        settings.db_connector, store.user_id, store.origin, settings.hub_address or "none")
