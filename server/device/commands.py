"""The device's commands: `flask seed ...` and `flask sync once|status`."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from server.connectors.seeding import StoreNotEmpty, default_seed_path, load_seed_file, seed_store
from server.core.seeding import SeedError, validate_seed
from server.sync.bookmark import load_bookmark
from server.sync.status import sync_status

PROGRESS_THRESHOLD = 2000
JOIN_SECONDS = 600.0  # `sync once` at a terminal waits longer for a running round than the API does
sync_cli = AppGroup("sync", help="Run a sync round or show the sync status.")


@click.command("seed")
@with_appcontext
@click.argument("path", default=default_seed_path)
@click.option("--reset", is_flag=True, help="Replace whatever the store holds.")
def seed_command(path: str, reset: bool) -> None:
    """Fill the store the app runs on from a seed file."""
    try:
        seed = validate_seed(load_seed_file(path))
        done = seed_store(current_app.extensions["store"], seed, reset=reset)
    except SeedError as exc:
        raise click.ClickException("invalid seed file, nothing written:\n  " + "\n  ".join(exc.problems))
    except StoreNotEmpty as exc:
        raise click.ClickException(str(exc))
    click.echo(f"seeded {done['courses']} courses ({done['inserted']['records']} records) for {done['userId']}")


def _service():
    service = current_app.extensions.get("sync")
    if service is None:
        raise click.ClickException("No hub is configured: set HUB_URL and HUB_TOKEN (or MONGO_URI) to enable sync.")
    return service


@sync_cli.command("once")
def sync_once() -> None:
    """Run one sync round now and print its report."""
    service = _service()
    cursor = load_bookmark(service.local).cursor
    pending, _ = service.local.pending_since(cursor)
    bar = click.progressbar(length=pending, label="pushing", file=None) if pending > PROGRESS_THRESHOLD else None
    last = {"push": 0}

    def progress(phase: str, moved: int) -> None:
        if bar is not None and phase == "push":
            bar.update(moved - last["push"])
            last["push"] = moved
        elif bar is not None and phase == "pull" and moved > PROGRESS_THRESHOLD:
            click.echo(f"\rpulled {moved} changes", nl=False, err=True)

    if bar is not None:
        with bar:
            report = service.join(JOIN_SECONDS, progress=progress, here=True)
    else:
        report = service.join(JOIN_SECONDS, progress=progress, here=True)
    click.echo(json.dumps(report.as_dict(), indent=2))
    if report.error:
        raise SystemExit(1)


@sync_cli.command("status")
def sync_status_command() -> None:
    """Print the sync status as JSON (the same shape as GET /api/v1/sync/status, sync on or off)."""
    status = sync_status(current_app.extensions["store"], current_app.extensions.get("sync"))
    click.echo(json.dumps({**status, "hubFrom": current_app.config.get("HUB_FROM")}, indent=2))


def install(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(sync_cli)
