"""The Flask app factory."""

from __future__ import annotations

import atexit
import logging
from typing import Any

from flask import Flask

from server import cli, http, routes, sync_routes
from server.config import Settings, load_settings
from server.connectors.factory import get_db_connector


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Defaults, then settings from the environment (or `test_config["SETTINGS"]`), then the
    rest of the test mapping. `test_config["STORE"]` may supply an already built connector."""
    app = Flask(__name__)
    test_config = dict(test_config or {})
    settings: Settings = test_config.pop("SETTINGS", None) or load_settings()
    app.config.update(SETTINGS=settings, MAX_CONTENT_LENGTH=1024 * 1024, START_SYNC=True)
    app.config.update(test_config)
    connector = app.config.pop("STORE", None)
    if connector is None:
        connector = get_db_connector(settings.db_connector, settings)
        connector.connect()
        atexit.register(connector.close)
    app.extensions["store"] = connector
    http.install(app)
    app.register_blueprint(routes.bp)
    sync_routes.install(app)
    app.extensions["operations"] = [*routes.OPERATIONS, *sync_routes.OPERATIONS]
    cli.install(app)
    return app


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
