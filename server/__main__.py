"""python -m server: start the API with waitress, configured from the environment / `.env`.
python -m server --hub: start a hub server instead (the hub protocol in front of the store that
DB_CONNECTOR names; devices sync through it with HUB_URL and a token)."""

from __future__ import annotations

import logging
import signal
import sys


def main(argv: list[str] | None = None) -> int:
    from server.core.config import ConfigError, load_settings

    args = sys.argv[1:] if argv is None else argv
    if args not in ([], ["--hub"]):
        print("usage: python -m server [--hub]", file=sys.stderr)
        return 2
    as_hub = args == ["--hub"]
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"error: bad setting: {exc}", file=sys.stderr)
        return 2
    _warn(settings.warnings)
    from server.api import configure_logging, create_app, create_hub_app
    from server.core.errors import StoreUnavailable

    configure_logging(settings.log_level)
    try:
        # The worker starts once the port is ours.
        app = create_hub_app(settings) if as_hub else create_app(settings, start_sync=False)
    except StoreUnavailable as exc:
        print(f"error: cannot open the {settings.db_connector} store: {exc.message}", file=sys.stderr)
        return 2
    from server.sync.wiring import start_worker

    try:
        server = _listening(app, settings, as_hub)
    except OSError as exc:  # a busy port, an address this machine does not have, no permission
        print(f"error: cannot listen on {settings.host}:{settings.port}: {_what_to_do(exc)}", file=sys.stderr)
        return 3
    # Rounds run in a child process by default, but with SYNC_PROCESS=0 a round's CPU work shares
    # this interpreter with the request threads; a 1 ms switch interval (the default is 5 ms)
    # keeps it from adding whole milliseconds to a request.
    sys.setswitchinterval(0.001)
    if "sync" in app.extensions:
        start_worker(app.extensions["sync"])
    if as_hub:
        from server.hub import compactor as hub_compactor

        hub_compactor.start(settings, app.extensions["store"], app.extensions["hub_stores"])
    _serving(settings, app.extensions["store"], as_hub)
    # SIGTERM (systemd, a container runtime, `kill`) stops the server as Ctrl-C does: the worker
    # and its sync child shut down and the stores close, instead of the process just vanishing.
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


def _listening(app, settings, as_hub: bool):
    """The server for `app`, bound to its port (OSError when it cannot be)."""
    if as_hub:  # thousands of devices wait at a hub: an event loop, not a thread each (hub_front.py)
        from server.hub.front import HubServer

        return HubServer(app, settings.host, settings.port)
    from server.web import serving

    return serving.create(app, settings.host, settings.port, app.config["MAX_CONTENT_LENGTH"])


def _warn(warnings: tuple[str, ...]) -> None:
    for warning in warnings:  # a typo'd setting is said, not silently ignored
        print(f"warning: {warning}", file=sys.stderr)


def _what_to_do(exc: OSError) -> str:
    """Why the port cannot be had, and what to set about it."""
    import errno

    why = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        return f"{why}; another program holds that port: stop it, or set PORT to a free one (PORT=8010)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{why}; this machine has no such address: set HOST to one of its own (HOST=127.0.0.1)"
    return why


def _stop(signum, frame) -> None:
    raise KeyboardInterrupt


def _serving(settings, store, as_hub: bool) -> None:
    if as_hub:
        logging.getLogger("server").info("serving the hub protocol on http://%s:%s/hub/v1 store=%s",
                                         settings.host, settings.port, settings.db_connector)
    else:
        logging.getLogger("server").info(
            "serving on http://%s:%s store=%s user=%s device=%s hub=%s", settings.host, settings.port,
            settings.db_connector, store.user_id, store.origin, settings.hub_address or "none")

if __name__ == "__main__":
    sys.exit(main())
