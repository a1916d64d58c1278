"""A hub server's own compaction: every HUB_COMPACT_EVERY_MINUTES, for each user in turn, the
changes every device still served has pulled are dropped (retention.compact_user), a bounded
number per user and run, in short writes that pushes and pulls go on between. Several hub
processes may run it on one store: a floor only rises, so two runs at once drop nothing twice."""

from __future__ import annotations

import logging
import time

from server.connectors.base import DatabaseConnector
from server.connectors.factory import registry_for
from server.core.config import Settings
from server.core.errors import AppError
from server.hub.retention import compact_user, users
from server.hub.stores import HubStores

log = logging.getLogger("server.hub")
PER_USER_AND_RUN = 20_000  # changes dropped at most per user in one run; the rest waits for the next


def compact_all(settings: Settings, store: DatabaseConnector, stores: HubStores) -> dict[str, int]:
    """One run: user id -> changes dropped. A user whose store fails is logged and skipped."""
    registry, dropped = registry_for(store), {}
    for user in users(registry):
        try:
            dropped[user] = compact_user(stores.for_user(user), registry, user, time.time(),
                                         settings.hub_device_retention_days, PER_USER_AND_RUN)
        except AppError as exc:
            log.warning("history of %s not compacted: %s", user, exc.message)
        except Exception:  # noqa: BLE001 - one user's broken history must not stop the others'
            log.exception("history of %s not compacted", user)
    if any(dropped.values()):
        log.info("compacted %d changes of %d users", sum(dropped.values()), sum(map(bool, dropped.values())))
    return dropped


def start(settings: Settings, store: DatabaseConnector, stores: HubStores):
    """The scheduled job, in a background thread; None when HUB_COMPACT_EVERY_MINUTES is 0."""
    if not settings.hub_compact_every_minutes:
        return None
    from apscheduler.schedulers.background import BackgroundScheduler

    scheduler = BackgroundScheduler(daemon=True, timezone="UTC")
    scheduler.add_job(compact_all, "interval", args=(settings, store, stores), id="compact-history",
                      minutes=settings.hub_compact_every_minutes, max_instances=1, coalesce=True)
    scheduler.start()
    return scheduler
