"""Which hub a device syncs through, and pairing with one by an invitation.

The hub in force: HUB_URL and HUB_TOKEN (or MONGO_URI) when set, since a setting wins; else the
hub the store keeps from a pairing (connectors/hub_link.py); else none. An invitation
(`hub invite`, hub/pairing.py says why it looks so) is read, its code traded at the hub for a
token, and the token checked with the epoch call before anything is kept; each way it can fail
is an AppError with a code and one sentence naming the address."""

from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from server.connectors.base import DatabaseConnector
from server.connectors.factory import hub_link_for
from server.connectors.hub_link import KeptHub
from server.core.config import ConfigError, Settings, _hub_url
from server.core.errors import AppError, StoreUnavailable
from server.core.records import is_id
from server.sync.http_hub import HubClient

INVITATION = re.compile(r"^(coursesync|coursesync\+http)://([!-\"$-~]+)#(csi_[A-Za-z0-9_-]{16,200})$")
TOKEN = re.compile(r"^[A-Za-z0-9._~-]{16,512}$")  # what a hub's token may be, in a header
HUB_CODES = ("pairing_code_unknown", "invitation_used", "invitation_revoked", "invitation_expired")
MAX_ANSWER = 64 * 1024


class PairingFailed(AppError):
    """A pairing that did not happen, with the status the device answers it with."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message, code=code)
        self.status = status


@dataclass(frozen=True)
class Invitation:
    hub_url: str  # as HUB_URL takes it
    code: str


def in_force(settings: Settings, store: DatabaseConnector) -> tuple[Settings, str | None]:
    """The settings with the hub in force, and where it comes from: "settings", "store" or None."""
    if settings.hub_enabled:
        return settings, "settings"
    link = hub_link_for(store)
    kept = store.guarded(link.kept) if link is not None else None
    if kept is None:
        return settings, None
    return replace(settings, hub_url=kept.url, hub_token=kept.token), "store"


def parse_invitation(text: str) -> Invitation:
    found = INVITATION.match(text.strip())
    if not found:
        raise PairingFailed(400, "invalid_invitation",
                            "That is not an invitation: paste the whole last line `hub invite` printed, like "
                            "coursesync://hub.example.org#csi_… (the part after # is the code).")
    scheme, address, code = found.groups()
    url = ("https" if scheme == "coursesync" else "http") + "://" + address
    try:
        return Invitation(_hub_url("the invitation's address", url), code)
    except ConfigError as exc:
        if scheme == "coursesync+http":
            raise PairingFailed(400, "invalid_invitation",
                                f"A coursesync+http:// invitation is only for a hub on this machine, and {url} is "
                                "not: ask for one with the hub's https:// address (HUB_PUBLIC_URL at the hub).") \
                from None
        raise PairingFailed(400, "invalid_invitation", f"That invitation's address will not do: {exc}.") from None


def exchange(invitation: Invitation, timeout_ms: int) -> dict[str, str]:
    """The hub's answer to the code: {"userId", "deviceId", "token"}. The whole exchange has a
    deadline (a person waits on it, and so does a request thread), not only each read: a server
    that drips its answer a byte at a time is cut off."""
    url, parts = invitation.hub_url, urlsplit(invitation.hub_url)
    timeout = max(timeout_ms / 1000, 1.0) * 3
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname or "", parts.port, timeout=timeout,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    late = threading.Event()
    watchdog = threading.Timer(timeout * 2, _cut, args=(conn, late))
    try:
        conn.connect()  # bounded by the timeout; the watchdog bounds everything after it
        watchdog.start()
        conn.request("POST", parts.path.rstrip("/") + "/hub/v1/pair", json.dumps({"code": invitation.code}),
                     {"Content-Type": "application/json", "User-Agent": "coursesync-device"})
        resp = conn.getresponse()
        status, raw = resp.status, resp.read(MAX_ANSWER)
    except ssl.SSLError as exc:
        raise PairingFailed(502, "hub_tls_refused",
                            f"The hub at {url} failed this device's TLS check ({_reason(exc)}): its certificate "
                            "is not one this device trusts; ask whoever runs the hub to fix it.") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:  # ValueError: a host IDNA cannot encode
        raise _unreachable(url, f"no whole answer within {timeout * 2:.0f} s" if late.is_set() else _reason(exc)) \
            from None
    finally:
        watchdog.cancel()
        conn.close()
    if late.is_set():  # the cut ended the read short, which http.client does not always raise for
        raise _unreachable(url, f"no whole answer within {timeout * 2:.0f} s")
    return _answer(url, status, raw)


def _unreachable(url: str, reason: str) -> PairingFailed:
    return PairingFailed(502, "hub_unreachable", f"The hub at {url} cannot be reached ({reason}): check that it "
                                                 "runs and that this device is online, then paste the invitation "
                                                 "again.")


def _cut(conn: http.client.HTTPConnection, late: threading.Event) -> None:
    late.set()
    sock = conn.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _answer(url: str, status: int, raw: bytes) -> dict[str, str]:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if status in (401, 410) and isinstance(error, dict) and error.get("code") in HUB_CODES:
        raise PairingFailed(409, error["code"], str(error.get("message"))[:300])
    if status == 429:
        raise PairingFailed(503, "hub_busy", f"The hub at {url} took too many pairing calls from here; "
                                             "paste the invitation again in a minute.")
    data = body.get("data") if isinstance(body, dict) and status == 200 else None
    if not isinstance(data, dict) or not (is_id(data.get("userId")) and is_id(data.get("deviceId"))
                                          and isinstance(data.get("token"), str) and TOKEN.match(data["token"])):
        raise PairingFailed(502, "not_a_hub",
                            f"The server at {url} is not a coursesync hub that takes invitations (it answered "
                            f"{status} to /hub/v1/pair): check the address in the invitation.")
    return data


def check_token(invitation: Invitation, paired: dict[str, str], timeout_ms: int) -> None:
    """The new token works: the epoch call answers, for the invitation's user."""
    client = HubClient(invitation.hub_url, paired["token"], timeout_ms=timeout_ms, user_id=paired["userId"])
    try:
        client.hub_epoch()
    except StoreUnavailable as exc:
        raise PairingFailed(502, "hub_check_failed",
                            f"The hub at {invitation.hub_url} gave this device a token and then refused it "
                            f"({exc.message}); paste the invitation again.") from None
    finally:
        client.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return exc.verify_message or "certificate verify failed"
    text = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc) or exc.__class__.__name__
    return str(text)[:200]


def kept_hub(invitation: Invitation, paired: dict[str, str], paired_at: str) -> KeptHub:
    return KeptHub(invitation.hub_url, paired["token"], paired["userId"], paired["deviceId"], paired_at)
