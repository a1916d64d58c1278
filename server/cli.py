"""`flask seed ...` and `flask sync once|status`, registered on the app."""

from __future__ import annotations

import json
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup, with_appcontext

from server.records import is_id
from server.seeding import SeedError, validate_seed
from server.seeding_run import StoreNotEmpty, default_seed_path, load_seed_file, seed_store
from server.sync.engine import stored_cursor
from server.sync.service import sync_status
from server.times import iso_from_seconds

PROGRESS_THRESHOLD = 2000
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
    _, cursor = stored_cursor(service.local)
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
            report = service.run_once(progress=progress, here=True)
    else:
        report = service.run_once(progress=progress, here=True)
    click.echo(json.dumps(report.as_dict(), indent=2))
    if report.error:
        raise SystemExit(1)


@sync_cli.command("status")
def sync_status_command() -> None:
    """Print the sync status as JSON (the same shape as GET /api/v1/sync/status, sync on or off)."""
    click.echo(json.dumps(sync_status(current_app.extensions["store"], current_app.extensions.get("sync")), indent=2))


hub_cli = AppGroup("hub", help="Manage the devices that may sync through this hub (run against the hub's store).")


def _registry():
    from server.connectors.registry import registry_for

    return registry_for(current_app.extensions["store"])


@hub_cli.command("add-device")
@click.argument("user_id")
@click.option("--name", default="", help="A name to tell the device by (a laptop, a phone).")
def hub_add_device(user_id: str, name: str) -> None:
    """Make a token for a new device of USER_ID. It is printed once, as the last line."""
    if not is_id(user_id):
        raise click.ClickException(f"not a user id: {user_id!r}")
    device, token = _registry().add(user_id, name[:200])
    click.echo(f"device {device.device_id} of {device.user_id} added; its token (shown only now):")
    click.echo(token)


@hub_cli.command("list-devices")
@click.argument("user_id", required=False)
def hub_list_devices(user_id: str | None) -> None:
    """The hub's devices (of USER_ID), oldest first, as JSON lines, with what each holds of its
    quotas (origins of its own and brought in by relay, against HUB_MAX_ORIGINS); tokens are
    never shown."""
    from server.connectors.registry import RELAYED

    registry = _registry()
    limit = current_app.config["SETTINGS"].hub_max_origins
    positions = {}
    for device in registry.devices(user_id):
        if device.user_id not in positions:
            positions[device.user_id] = registry.positions(device.user_id)
        quotas = {"origins": registry.origins_held(device.user_id, device.device_id), "originsAllowed": limit,
                  "relayedOrigins": registry.origins_held(device.user_id, RELAYED + device.device_id),
                  "relayedOriginsAllowed": 4 * limit}
        at = positions[device.user_id].get(device.device_id)
        position = None if at is None else {"pulled": at.pulled, "seenAt": iso_from_seconds(at.seen_at)}
        click.echo(json.dumps({**device.as_dict(), "quotas": quotas, "position": position}))


@hub_cli.command("history")
@click.argument("user_id")
def hub_history(user_id: str) -> None:
    """What of USER_ID's history every device still served holds (JSON): per origin, the hub's
    newest change, the floor that every device holding history back has pulled, and the device
    that holds it lowest. A device not seen for HUB_DEVICE_RETENTION_DAYS holds nothing back."""
    from server.hub_stores import HubStores
    from server.retention import retention_report

    if not is_id(user_id):
        raise click.ClickException(f"not a user id: {user_id!r}")
    settings = current_app.config["SETTINGS"]
    stores = HubStores(settings, current_app.extensions["store"])
    try:
        report = retention_report(stores.for_user(user_id), _registry(), user_id, time.time(),
                                  settings.hub_device_retention_days)
    finally:
        stores.close()
    click.echo(json.dumps(report, indent=2))


@hub_cli.command("compact")
@click.argument("user_id", required=False)
@click.option("--limit", default=100_000, show_default=True, help="Changes dropped at most, per user.")
def hub_compact(user_id: str | None, limit: int) -> None:
    """Drop the changes of USER_ID (or of every user) that every device still served has pulled
    (`hub history` shows which), in short writes that pushes and pulls go on between. A device
    whose cursor is below what went catches up from the records. One JSON line per user."""
    from server.hub_stores import HubStores
    from server.retention import compact_user, users

    if user_id is not None and not is_id(user_id):
        raise click.ClickException(f"not a user id: {user_id!r}")
    settings = current_app.config["SETTINGS"]
    registry, stores = _registry(), HubStores(settings, current_app.extensions["store"])
    try:
        for user in [user_id] if user_id else users(registry):
            dropped = compact_user(stores.for_user(user), registry, user, time.time(),
                                   settings.hub_device_retention_days, limit)
            click.echo(json.dumps({"userId": user, "dropped": dropped}))
    finally:
        stores.close()


@hub_cli.command("purge")
@click.argument("device_id")
def hub_purge(device_id: str) -> None:
    """Drop a revoked device's changes from its user's log at once (a flood, or history nobody
    wants kept), with the refused changes kept of its origins. What its changes did to the
    records stays; a device that had not pulled them all catches up from the records. One JSON
    line."""
    from server.hub_stores import HubStores
    from server.purge import NotRevoked, purge_device

    registry = _registry()
    found = [d for d in registry.devices() if d.device_id == device_id]
    if not found:
        raise click.ClickException(f"no device {device_id!r} at this hub")
    stores = HubStores(current_app.config["SETTINGS"], current_app.extensions["store"])
    try:
        click.echo(json.dumps(purge_device(stores.for_user(found[0].user_id), registry, found[0])))
    except NotRevoked as exc:
        raise click.ClickException(str(exc))
    finally:
        stores.close()


@hub_cli.command("revoke")
@click.argument("token_or_device")
def hub_revoke(token_or_device: str) -> None:
    """Revoke a device by its token or its device id: it is refused at once."""
    revoked = _registry().revoke(token_or_device)
    if not revoked:
        raise click.ClickException("no device with that token or id, or it is revoked already")
    for device in revoked:
        click.echo(f"revoked {device.device_id} of {device.user_id}")


def install(app: Flask) -> None:
    app.cli.add_command(seed_command)
    app.cli.add_command(sync_cli)
    app.cli.add_command(hub_cli)
