"""python -m server: start the API with waitress, configured from the environment / `.env`."""

from __future__ import annotations

import logging
import sys

# Waitress's defaults let about 100 idle or trickling connections make the server unreachable
# (connection_limit 100, channel_timeout 120 s): a hostile page can open that many. Idle and
# half-sent requests cost no thread (waitress buffers a request before a thread sees it), so
# many more may wait, and one that stays silent is closed sooner.
CONNECTIONS = {"connection_limit": 1000, "channel_timeout": 30, "cleanup_interval": 10}


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
        app = create_app(settings, start_sync=False)  # the worker starts once the port is ours
    except StoreUnavailable as exc:
        print(f"error: cannot open the {settings.db_connector} store: {exc.message}", file=sys.stderr)
        return 2
    from waitress import create_server

    from server.sync.wiring import start_worker

    try:
        server = create_server(app, host=settings.host, port=settings.port, threads=8, ident="coursesync",
                               **CONNECTIONS)
    except OSError as exc:  # a busy port, an address this machine does not have, no permission
        print(f"error: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    # Rounds run in a child process by default, but with SYNC_PROCESS=0 a round's CPU work shares
    # this interpreter with the request threads; a 1 ms switch interval (the default is 5 ms)
    # keeps it from adding whole milliseconds to a request.
    sys.setswitchinterval(0.001)
    if "sync" in app.extensions:
        start_worker(app.extensions["sync"])
    store = app.extensions["store"]
    logging.getLogger("server").info(
        "serving on http://%s:%s store=%s user=%s device=%s hub=%s", settings.host, settings.port,
        settings.db_connector, store.user_id, store.device_id, redact_uri(settings.mongo_uri) or "none")
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
