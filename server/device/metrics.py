"""GET /metrics of a device server, in Prometheus's text format (prometheus_client), behind
API_TOKEN like the rest of its API. What moves is counted as it happens (the rounds, what they
moved); what stands is read when the scrape comes (pending changes, conflicts, the quarantine)."""

from __future__ import annotations

import time

from flask import Flask
from prometheus_client import CollectorRegistry, Counter, Histogram

from server.connectors.base import DatabaseConnector
from server.core.clock import stamp_ms
from server.sync.bookmark import load_bookmark
from server.sync.report import RoundReport
from server.sync.service import SyncService
from server.web.metrics import Read, Standing, answer

ROUND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class DeviceMetrics:
    """A device server's: its sync rounds (counted by the service as they end) and its store."""

    def __init__(self, store: DatabaseConnector, service: SyncService | None = None):
        self.store, self.service = store, service
        self.registry = CollectorRegistry()
        self.rounds = Counter("coursesync_sync_rounds", "Sync rounds that ended, by result", ["result"],
                              registry=self.registry)
        self.round_seconds = Histogram("coursesync_sync_round_seconds", "How long a sync round took",
                                       buckets=ROUND_BUCKETS, registry=self.registry)
        self.changes = Counter("coursesync_sync_changes", "Changes a round moved, by what it did with them",
                               ["direction"], registry=self.registry)
        for result in ("ok", "failed"):
            self.rounds.labels(result)
        for direction in ("pushed", "pulled", "relayed", "from_snapshot", "conflicts"):
            self.changes.labels(direction)
        self.registry.register(Read(self._standing))
        if service is not None:
            service.observers.append(self.observe)

    def observe(self, report: RoundReport) -> None:
        self.rounds.labels("failed" if report.error else "ok").inc()
        self.round_seconds.observe(report.duration_ms / 1000)
        for direction, n in (("pushed", report.pushed), ("pulled", report.pulled), ("relayed", report.relayed),
                             ("from_snapshot", report.from_snapshot), ("conflicts", report.conflicts)):
            if n:
                self.changes.labels(direction).inc(n)

    def _standing(self) -> Standing:
        service = self.service
        count, oldest = self.store.pending_since(load_bookmark(self.store).cursor)
        now = service.now() if service else time.time()
        yield "coursesync_sync_enabled", "1 when this device syncs with a hub", 1 if service else 0
        yield "coursesync_sync_pending_changes", "Changes made here the hub has not acknowledged", count
        yield ("coursesync_sync_pending_oldest_age_seconds", "Age of the oldest change waiting to be sent",
               max(0.0, now - stamp_ms(oldest) / 1000) if oldest else 0)
        yield "coursesync_sync_open_conflicts", "Values that lost a merge and nobody has looked at", \
            self.store.count_conflicts()
        yield "coursesync_sync_quarantined", "Changes refused at a door and held", self.store.count_quarantine()
        if service is not None:
            yield ("coursesync_sync_last_success_timestamp_seconds", "When a round last ended without an error",
                   service.last_success)
            yield "coursesync_sync_consecutive_failures", "Rounds that failed since the last one that did not", \
                service.failures


def install(app: Flask, store: DatabaseConnector, service: SyncService | None = None) -> DeviceMetrics:
    metrics = DeviceMetrics(store, service)
    app.extensions["metrics"] = metrics
    app.add_url_rule("/metrics", "metrics", lambda: answer(metrics.registry))
    return metrics
