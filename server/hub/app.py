"""The hub app, built from the settings and a connected hub store (server/api.py opens the store
the settings name; a test hands in its own): the hub protocol and health, its body limits and
per-user stores, its waiters and refusal counters, metrics and the hub's commands. And how a hub
server listens and what it starts once the port is its own (`coursesync serve --hub`)."""

from __future__ import annotations

import atexit
import logging
from typing import TYPE_CHECKING

from flask import Flask

from server.connectors.base import DatabaseConnector
from server.connectors.factory import registry_for
from server.core.config import Settings
from server.hub import bodies, commands, compactor, limits, metrics, opening, pairing, routes, waiters
from server.hub.stores import HubStores
from server.web import http
from server.web.serving import open_file_limit

if TYPE_CHECKING:
    from server.hub.front import HubServer


def create_hub_app(settings: Settings, store: DatabaseConnector, *, testing: bool = False) -> Flask:
    """The hub server's app on `store`, with its registry of device tokens."""
    app = Flask("server.api")  # the name Flask's own log lines have always carried
    app.testing = testing
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=bodies.MAX_BODY_BYTES)
    stores = HubStores(settings, store)
    app.extensions.update(store=store, registry=registry_for(store), hub_stores=stores, operations=[],
                          in_flight=limits.InFlight(), waiters=waiters.Waiters(),
                          refusals=limits.Refusals(settings.hub_max_refusals_per_minute))
    atexit.register(stores.close)
    http.install(app, browser_facing=False)
    app.add_url_rule("/api/v1/health", "health", routes.health)
    assert opening.round_opening  # its module put POST /round on the routes' blueprint
    app.register_blueprint(routes.bp)
    app.register_blueprint(pairing.bp)
    app.after_request(bodies.compress)
    metrics.install(app)
    commands.install(app)
    return app


def listening(app: Flask, settings: Settings) -> HubServer:
    """The event-loop front, bound to the settings' port (OSError when it cannot be): thousands
    of devices wait at a hub, so not a thread each (front.py; imported here, as a device server
    never needs uvicorn)."""
    from server.hub.front import RESERVED_FILES, HubServer

    return HubServer(app, settings.host, settings.port, files=open_files(settings, RESERVED_FILES))


def open_files(settings: Settings, reserved: int) -> int:
    """The process's open-file limit, raised toward the hard limit for HUB_MAX_CONNECTIONS and
    the store's own files; one line says so when it stays short of that (the hub then holds
    fewer connections, and the rest wait in the kernel's queue)."""
    needed = settings.hub_max_connections + reserved
    files = open_file_limit(needed)
    if files < needed:
        logging.getLogger("server.hub").warning(
            "open-file limit %d: this hub holds %d connections, not HUB_MAX_CONNECTIONS=%d, which needs %d open "
            "files; raise the limit where the hub starts (`ulimit -n %d` in its shell, LimitNOFILE=%d in its "
            "systemd unit, `--ulimit nofile=%d` for docker run) or set HUB_MAX_CONNECTIONS lower",
            files, max(8, files - reserved), settings.hub_max_connections, needed, needed, needed, needed)
    return files


def started(app: Flask, settings: Settings) -> None:
    """Once the port is ours: the scheduled compaction, and the line that says what serves."""
    compactor.start(settings, app.extensions["store"], app.extensions["hub_stores"])
    logging.getLogger("server").info("serving the hub protocol on http://%s:%s/hub/v1 store=%s",
                                     settings.host, settings.port, settings.db_connector)
