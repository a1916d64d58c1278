"""python -m server: start the API with waitress, configured from the environment / `.env`."""

from __future__ import annotations

import logging
import sys


def main() -> int:
    from server.config import ConfigError, load_settings, redact_uri

    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: bad setting: {exc}", file=sys.stderr)
        return 2
    from server.api import configure_logging, create_app
    from server.errors import StoreUnavailable

    configure_logging(settings.log_level)
    try:
        app = create_app(settings)
    except StoreUnavailable as exc:
        print(f"error: cannot open the {settings.db_connector} store: {exc.message}", file=sys.stderr)
        return 2
    from waitress import serve

    # Rounds run in a child process by default, but with SYNC_PROCESS=0 a round's CPU work shares
    # this interpreter with the request threads; a 1 ms switch interval (the default is 5 ms)
    # keeps it from adding whole milliseconds to a request.
    sys.setswitchinterval(0.001)

    store = app.extensions["store"]
    logging.getLogger("server").info(
        "serving on http://%s:%s store=%s user=%s device=%s hub=%s", settings.host, settings.port,
        settings.db_connector, store.user_id, store.device_id, redact_uri(settings.mongo_uri) or "none")
    serve(app, host=settings.host, port=settings.port, threads=8, ident="coursesync")
    return 0


if __name__ == "__main__":
    sys.exit(main())
