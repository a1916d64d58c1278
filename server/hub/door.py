"""Who a request to the hub server is, known before its body is read (front.py asks): the
device its token names, looked up on a thread of its own and remembered for a while, so that a
request with no valid token is answered at the door and never waits for, or holds, anything a
valid one needs. The app checks the token again (routes.authenticate): a device revoked a
moment ago is refused there, as before."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from server.connectors.registry import Device
from server.core.errors import StoreUnavailable
from server.web.http import bearer_token

KNOWN_SECONDS = 30.0  # a token found (or not) is not looked up again for this long
UNKNOWN_SECONDS = 5.0
MAX_REMEMBERED = 100_000
# Paths served without a device's token: health, the protocol's document, and /metrics (its own).
# And the door for an invitation's code (hub/pairing.py), which a device calls before it has a token.
PUBLIC = frozenset(("/api/v1/health", "/hub/v1/openapi.json", "/metrics", "/hub/v1/pair"))


class Refused(Exception):
    """A request refused at the door: its status, error code and message (the app's own words)."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Door:
    """Tokens to devices, for the front: `who(path, header)` is None for a path served to
    anyone, the device for a good token, and raises Refused otherwise."""

    def __init__(self, find: Callable[[str], Device | None], clock: Callable[[], float] = time.monotonic):
        self.find, self.clock = find, clock
        self.remembered: dict[str, tuple[float, Device | None]] = {}
        self.executor = ThreadPoolExecutor(2, thread_name_prefix="hub-door")

    async def who(self, path: str, header: str | None) -> Device | None:
        if path in PUBLIC or not path.startswith("/hub/v1/"):
            return None  # the app answers these (a 404 for a path it does not know)
        token = bearer_token(header)
        if not token:
            raise Refused(401, "unauthorized", "Send this device's hub token: Authorization: Bearer <token>.")
        device = await self._device(token)
        if device is None:
            raise Refused(401, "unknown_token", "This token is not known to the hub.")
        if device.revoked_at:
            raise Refused(401, "token_revoked", f"This device's token was revoked at {device.revoked_at}.")
        return device

    async def _device(self, token: str) -> Device | None:
        now = self.clock()
        known = self.remembered.get(token)
        if known is not None and known[0] > now:
            return known[1]
        try:
            device = await asyncio.get_running_loop().run_in_executor(self.executor, self.find, token)
        except StoreUnavailable as exc:
            raise Refused(503, exc.code, exc.message) from None
        if len(self.remembered) >= MAX_REMEMBERED:
            self.remembered = {t: k for t, k in self.remembered.items() if k[0] > now}
            if len(self.remembered) >= MAX_REMEMBERED:
                self.remembered.clear()
        self.remembered[token] = (now + (KNOWN_SECONDS if device else UNKNOWN_SECONDS), device)
        return device

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)


def door_for(app: Any) -> Door:
    """The door of a hub app: its registry, with the store's driver errors as StoreUnavailable."""
    store, registry = app.extensions["store"], app.extensions["registry"]
    return Door(lambda token: store.guarded(registry.find, token))
