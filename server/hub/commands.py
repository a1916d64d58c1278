"""The hub's commands: `flask hub add-device|list-devices|history|compact|purge|revoke`, run
against the hub's store."""

from __future__ import annotations

import json
import time

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from server.core.records import is_id
from server.core.times import iso_from_seconds
from server.hub.pairing import invite_command, state_of

hub_cli = AppGroup("hub", help="Manage the devices that may sync through this hub (run against the hub's store).")


def _registry():
    from server.connectors.factory import registry_for

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
    """The hub's devices (of USER_ID), oldest first, as JSON lines, each with its name, deviceId,
    state (invited, paired, revoked or expired: an invitation not used in time) and what it holds of its
    quotas (origins of its own and brought in by relay, against HUB_MAX_ORIGINS); tokens are
    never shown."""
    from server.connectors.registry import RELAYED

    registry = _registry()
    limit = current_app.config["SETTINGS"].hub_max_origins
    positions = {}
    invitations, now = registry.invitations(user_id), time.time()
    for device in registry.devices(user_id):
        if device.user_id not in positions:
            positions[device.user_id] = registry.positions(device.user_id)
        quotas = {"origins": registry.origins_held(device.user_id, device.device_id), "originsAllowed": limit,
                  "relayedOrigins": registry.origins_held(device.user_id, RELAYED + device.device_id),
                  "relayedOriginsAllowed": 4 * limit}
        at = positions[device.user_id].get(device.device_id)
        position = None if at is None else {"pulled": at.pulled, "seenAt": iso_from_seconds(at.seen_at)}
        click.echo(json.dumps({**device.as_dict(), "state": state_of(device, invitations.get(device.device_id), now),
                               "quotas": quotas, "position": position}))


@hub_cli.command("history")
@click.argument("user_id")
def hub_history(user_id: str) -> None:
    """What of USER_ID's history every device still served holds (JSON): per origin, the hub's
    newest change, the floor that every device holding history back has pulled, and the device
    that holds it lowest. A device not seen for HUB_DEVICE_RETENTION_DAYS holds nothing back."""
    from server.hub.retention import retention_report
    from server.hub.stores import HubStores

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
    from server.hub.retention import compact_user, users
    from server.hub.stores import HubStores

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
    from server.hub.purge import NotRevoked, purge_device
    from server.hub.stores import HubStores

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
    """Revoke a device by its token or its device id (an invitation too): it is refused at once."""
    revoked = _registry().revoke(token_or_device)
    if not revoked:
        raise click.ClickException("no device with that token or id, or it is revoked already")
    for device in revoked:
        click.echo(f"revoked {device.device_id} of {device.user_id}")


hub_cli.add_command(invite_command)


def install(app: Flask) -> None:
    app.cli.add_command(hub_cli)
