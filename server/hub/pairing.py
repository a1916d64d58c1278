"""Pairing a device with one string: `hub invite USER_ID` makes a device of the user in state
invited, with a one-time pairing code (only its SHA-256 kept, like tokens), and prints the
invitation: the hub's address and the code in one string,

    coursesync://hub.example.org[:PORT][/PATH]#csi_...     (an https hub)
    coursesync+http://127.0.0.1:8010#csi_...               (a plain-http hub on loopback)

One string to copy; the address in plain sight, so a person sees where it points before pasting;
the code in the fragment, which no client sends in a request line, so nothing that logs URLs
(a proxy, a browser's history of the hub) ever sees it.

The device trades the code for a token at `POST /hub/v1/pair` (no token: the code is the
door). Until the token is first used by a sync call, the same code may be traded again (an
answer lost on the way), each time for a new token that replaces the last; after that, or once
the invitation expired or was revoked, the code is refused with a code and a sentence."""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from urllib.parse import urlsplit

import click
from flask import Blueprint, current_app, request
from flask.cli import with_appcontext

from server.connectors.registry import CODE_PREFIX, Device, DeviceRegistry, Invitation
from server.core.config import LOOPBACK_HOSTS, Settings
from server.core.errors import AppError, TooManyRequests, Unauthorized, ValidationError
from server.core.records import is_id
from server.hub.bodies import json_object, only_keys
from server.web.http import declaring, envelope
from server.web.openapi import Operation

bp = Blueprint("hub_pairing", __name__, url_prefix="/hub/v1")
OPERATIONS: list[Operation] = []
route = declaring(bp, OPERATIONS)
PAIR_PATH = "/hub/v1/pair"
MAX_PAIR_BODY = 1024  # {"code": "csi_..."} is some 50 bytes
ATTEMPTS_PER_MINUTE = 20  # pairing calls of one client address per minute and hub process
USED_REMEMBERED = 100_000


class Gone(AppError):
    """An invitation that was good once: spent, revoked or expired (410)."""

    status = 410
    code = "gone"


# The hub's refusals of a code, by the registry's outcome: (error, code, sentence).
REFUSALS = {
    "unknown": (Unauthorized, "pairing_code_unknown",
                "This hub knows no such pairing code: copy the whole invitation again, or ask whoever runs the hub "
                "for a new one (`hub invite`)."),
    "used": (Gone, "invitation_used",
             "This invitation was used already by the device it paired: ask whoever runs the hub for a new one "
             "(`hub invite`)."),
    "revoked": (Gone, "invitation_revoked",
                "This invitation was revoked at the hub: ask whoever runs the hub for a new one (`hub invite`)."),
    "expired": (Gone, "invitation_expired",
                "This invitation expired unused: ask whoever runs the hub for a new one (`hub invite`)."),
}


class Attempts:
    """Pairing calls of each client address in this process in the current minute, at most
    `per_minute` (as limits.Refusals counts a device's refusals). An IPv6 address counts by its
    /64, which one subscriber usually holds whole. The table holds at most `addresses` in a
    minute: past that, a new address is refused until the minute turns (those already counted
    go on), so a crowd of addresses costs a bounded table, not the hub's memory."""

    def __init__(self, per_minute: int = ATTEMPTS_PER_MINUTE, clock=time.monotonic, addresses: int = 100_000):
        self.per_minute, self._clock, self._lock, self.addresses = per_minute, clock, threading.Lock(), addresses
        self._counts: dict[str, tuple[int, int]] = {}

    def take(self, address: str) -> bool:
        return self.refused(address) is None

    def refused(self, address: str) -> str | None:
        """Count one call of `address`; None when it may go on, else why not: "address" (its
        allowance is spent) or "crowd" (the table is full this minute)."""
        minute, key = int(self._clock() // 60), _bucket(address)
        with self._lock:
            if key not in self._counts and len(self._counts) >= self.addresses:
                self._counts = {a: c for a, c in self._counts.items() if c[0] == minute}
                if len(self._counts) >= self.addresses:
                    return "crowd"
            at, n = self._counts.get(key, (minute, 0))
            n = n if at == minute else 0
            if n >= self.per_minute:
                return "address"
            self._counts[key] = (minute, n + 1)
            return None


def _bucket(address: str) -> str:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def _registry() -> DeviceRegistry:
    return current_app.extensions["registry"]


@route(Operation("post", "/pair", "hubPair",
                 "Trade an invitation's pairing code for the invited device's token (no token needed: the code is "
                 "the door). Again while that token has not been used, each time for a new one",
                 {"200": ("HubPaired", "The device and its token", False)}, (400, 401, 410, 413, 429),
                 "HubPairRequest", public=True))
def pair():
    attempts = current_app.extensions.setdefault("pair_attempts", Attempts())
    refused = attempts.refused(request.remote_addr or "unknown")
    if refused == "crowd":
        raise TooManyRequests(f"Pairing calls came from more than {attempts.addresses} addresses in the last "
                              "minute; try again in a minute.", code="too_many_requests", retry_after=60)
    if refused:
        raise TooManyRequests(f"More than {attempts.per_minute} pairing calls came from this address in a minute; "
                              "try again in a minute.", code="too_many_requests", retry_after=60)
    if len(request.get_data()) > MAX_PAIR_BODY:
        raise _too_large()
    body = json_object()
    only_keys(body, {"code"})
    code = body.get("code")
    if not isinstance(code, str) or not code.startswith(CODE_PREFIX) or len(code) > 200:
        raise ValidationError({"code": f"must be the pairing code of an invitation: {CODE_PREFIX} and letters"})
    outcome, device, token = current_app.extensions["store"].guarded(_registry().exchange, code, time.time())
    if outcome != "paired" or device is None or token is None:
        error, code_name, sentence = REFUSALS[outcome]
        raise error(sentence, code=code_name)
    return envelope({"userId": device.user_id, "deviceId": device.device_id, "token": token})


def _too_large() -> AppError:
    exc = AppError(f"A pairing body is at most {MAX_PAIR_BODY} bytes: send only {{\"code\": \"csi_...\"}}.",
                   code="payload_too_large")
    exc.status = 413
    return exc


def note_first_use(device: Device) -> None:
    """A sync call came with this device's token: its invitation's code is spent (once per
    device and hub process; a device paired by `add-device` has none, and nothing is written)."""
    seen: set[str] = current_app.extensions.setdefault("pair_used", set())
    if device.device_id in seen:
        return
    current_app.extensions["store"].guarded(_registry().note_used, device.device_id, time.time())
    if len(seen) >= USED_REMEMBERED:
        seen.clear()
    seen.add(device.device_id)


# --- the operator's side: `hub invite`, and the state `hub list-devices` shows ---------------
def state_of(device: Device, invitation: Invitation | None, now: float) -> str:
    """invited (its code not traded yet), expired (not traded in time), paired, or revoked."""
    if device.revoked_at:
        return "revoked"
    if invitation is None or invitation.exchanged_at is not None:
        return "paired"
    return "expired" if invitation.expires_at <= now else "invited"


def public_address(settings: Settings) -> str:
    """Where devices reach this hub: HUB_PUBLIC_URL, else how the hub is served when that is
    loopback. Raises click.ClickException saying what to set otherwise."""
    if settings.hub_public_url:
        return settings.hub_public_url
    host = settings.host.strip("[]")
    if host in LOOPBACK_HOSTS or _is_loopback(host):
        return f"http://{'[' + host + ']' if ':' in host else host}:{settings.port}"
    raise click.ClickException(
        f"HOST={settings.host} is not an address a device can be sent to: set HUB_PUBLIC_URL to the https:// "
        "address devices reach this hub at (e.g. HUB_PUBLIC_URL=https://hub.example.org).")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def invitation_for(address: str, code: str) -> str:
    """coursesync://host[:port][/path]#code for an https hub, coursesync+http://... for http."""
    parts = urlsplit(address)
    scheme = "coursesync" if parts.scheme == "https" else "coursesync+http"
    return f"{scheme}://{parts.netloc}{parts.path.rstrip('/')}#{code}"


@click.command("invite")
@click.argument("user_id")
@click.option("--name", default="", help="A name to tell the device by (a laptop, a phone).")
@click.option("--expires-hours", default=24.0, show_default=True, type=click.FloatRange(0.01, 24 * 365),
              help="Hours the invitation may be used in; unused after that, it expires.")
@with_appcontext
@click.option("--qr/--no-qr", default=None, help="A QR code of the invitation before it (default: when the "
              "output is a terminal).")
def invite_command(user_id: str, name: str, expires_hours: float, qr: bool | None) -> None:
    """Invite a new device of USER_ID: prints the invitation (the hub's address and a one-time
    pairing code in one string) as the last line. Paste it into the device's sync page ("Connect
    to a hub") or POST it to the device's /api/v1/sync/hub. The address is HUB_PUBLIC_URL, else
    the HOST and PORT this hub serves on (loopback only)."""
    if not is_id(user_id):
        raise click.ClickException(f"not a user id: {user_id!r} (1-128 letters, digits or . _ ~ : -)")
    settings: Settings = current_app.config["SETTINGS"]
    address = public_address(settings)
    from server.connectors.factory import registry_for

    registry = registry_for(current_app.extensions["store"])
    device, code = registry.invite(user_id, name[:200], time.time() + expires_hours * 3600)
    click.echo(f"device {device.device_id} of {user_id} invited; the invitation expires unused in "
               f"{expires_hours:g} h (`hub revoke {device.device_id}` withdraws it). Paste it into the device's "
               "sync page, under Connect to a hub:")
    invitation = invitation_for(address, code)
    if qr if qr is not None else sys.stdout.isatty():
        click.echo(qr_text(invitation))
    click.echo(invitation)


def qr_text(text: str) -> str:
    """`text` as a QR code a phone's camera reads off a terminal (two rows of modules a line)."""
    import io

    import segno

    out = io.StringIO()
    segno.make(text, error="m").terminal(out=out, compact=True)
    return out.getvalue().rstrip("\n")
