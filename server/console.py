"""Every command line, as one click group: `coursesync` (the command an installed package gives)
and, in a checkout, `python -m server [--hub]`, seed.py and seed_mongo.py, which run one command
of it each under their own name. `coursesync COMMAND --help` says more of each."""

from __future__ import annotations

import errno
import os
import signal
import sys
from types import ModuleType
from typing import Any

import click

from server.device.seed_commands import seed_mongo, seed_sqlite


class Commands(click.Group):
    """The commands; `sync` and `hub` are the apps' own groups, loaded when named (they import
    the apps, which the seeders do not need)."""

    APP_GROUPS = ("hub", "sync")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.APP_GROUPS])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.APP_GROUPS:
            return _app_group(name)
        return super().get_command(ctx, name)


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """coursesync: an offline-first course server that syncs through a hub.

    Settings come from the environment and a .env file in the working directory
    (docs/settings.md)."""


@cli.command("serve")
@click.option("--hub", "as_hub", is_flag=True, help="Serve the hub protocol instead of a device's API.")
@click.option("--port", type=click.IntRange(0, 65535), help="The port to listen on (instead of PORT).")
@click.option("--host", help="The address to listen on (instead of HOST).")
def serve(as_hub: bool, port: int | None, host: str | None) -> None:
    """Serve the device's API, or with --hub a hub server.

    The device's API is served with waitress on the store the settings name; a hub server serves
    the hub protocol in front of the store DB_CONNECTOR names, and devices sync through it with
    HUB_URL and a token. Exit code 2: a bad setting, or a store that cannot be opened; 3: the
    port cannot be listened on."""
    # As the settings they stand for, so that the sync child and every message read the same.
    os.environ.update({name: str(value) for name, value in (("PORT", port), ("HOST", host)) if value is not None})
    raise SystemExit(_serve(as_hub))


cli.add_command(seed_sqlite)
cli.add_command(seed_mongo)


def _app_group(name: str) -> click.Command:
    """`sync` runs in the device app, `hub` in the hub app, each built from the environment when
    one of their commands runs: the same commands as `flask --app server.api sync|hub`."""
    from server.api import create_app, create_hub_app
    from server.web.cli import InApp

    if name == "sync":
        from server.device.commands import sync_cli

        return InApp(sync_cli, lambda: create_app(start_sync=False))
    from server.hub.commands import hub_cli

    return InApp(hub_cli, create_hub_app)


def run(command: click.Command, argv: list[str] | None = None, prog: str = "coursesync", **obj: Any) -> int:
    """Run `command` as a program called `prog` and give its exit code (for `sys.exit`, and for
    tests that call seed.py's and seed_mongo.py's `main`); `obj` is what the commands find as
    their context's object."""
    try:
        command.main(argv, prog_name=prog, obj=obj or None)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(cli, argv)


def _serve(as_hub: bool) -> int:
    from server.core.config import ConfigError, load_settings

    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"error: bad setting: {exc}", err=True)
        return 2
    for warning in settings.warnings:  # a typo'd setting is said, not silently ignored
        click.echo(f"warning: {warning}", err=True)
    from server.api import configure_logging, create_app, create_hub_app
    from server.core.errors import StoreUnavailable

    configure_logging(settings.log_level)
    try:
        # The worker starts once the port is ours.
        app = create_hub_app(settings) if as_hub else create_app(settings, start_sync=False)
    except StoreUnavailable as exc:
        click.echo(f"error: cannot open the {settings.db_connector} store: {exc.message}", err=True)
        return 2
    role = _role(as_hub)
    try:
        server = role.listening(app, settings)
    except OSError as exc:  # a busy port, an address this machine does not have, no permission
        click.echo(f"error: cannot listen on {settings.host}:{settings.port}: {_what_to_do(exc)}", err=True)
        return 3
    # Rounds run in a child process by default, but with SYNC_PROCESS=0 a round's CPU work shares
    # this interpreter with the request threads; a 1 ms switch interval (the default is 5 ms)
    # keeps it from adding whole milliseconds to a request.
    sys.setswitchinterval(0.001)
    role.started(app, settings)
    # SIGTERM (systemd, a container runtime, `kill`) stops the server as Ctrl-C does: the worker
    # and its sync child shut down and the stores close, instead of the process just vanishing.
    signal.signal(signal.SIGTERM, _stop)
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    return 0


def _what_to_do(exc: OSError) -> str:
    """Why the port cannot be had, and what to set about it."""
    why = exc.strerror or str(exc)
    if exc.errno == errno.EADDRINUSE:
        return f"{why}; another program holds that port: stop it, or set PORT to a free one (PORT=8010)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{why}; this machine has no such address: set HOST to one of its own (HOST=127.0.0.1)"
    return why


def _role(as_hub: bool) -> ModuleType:
    """The app module whose server this process runs: how it listens, what it starts."""
    if as_hub:
        from server.hub import app as hub_app

        return hub_app
    from server.device import app as device_app

    return device_app


def _stop(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
