"""GET /metrics in Prometheus's text format (prometheus_client), on a device server and on a hub
server. Each app has a registry of its own. What moves is counted as it happens (a device's
rounds, a hub's requests, changes and refusals); what stands is read when the scrape comes (a
device's pending changes, a hub's devices, stores and log). No label names a user or a device:
their number is bounded by the code, not by the people using it.

A device serves it behind API_TOKEN like the rest of its API; a hub server only to a scrape
that brings HUB_METRICS_TOKEN (a device's token is not enough: the figures are every user's),
and not at all while that is unset."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from flask import Flask, current_app, g, request
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

from server.core.clock import stamp_ms
from server.core.errors import NotFound, Unauthorized
from server.sync.bookmark import load_bookmark
from server.web.http import token_matches

DAY = 86_400
ROUND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# A refused change's code (core/changes.REFUSALS, made at the door) by its kind: a bounded label.
KIND_OF_REFUSAL = {
    "bad_record": "record", "clock_ahead": "clock_ahead",
    **dict.fromkeys(("bad_stamp", "foreign_stamp", "bad_bases", "bad_base", "bases_mismatch"), "stamp"),
    **dict.fromkeys(("bad_fields", "bad_delete", "invalid_field"), "field"),
    **dict.fromkeys(("not_an_object", "unknown_keys", "missing_keys"), "shape"),
}


def refusal_kind(refusal: dict[str, Any]) -> str:
    code = refusal.get("code")
    return KIND_OF_REFUSAL.get(code, "other") if isinstance(code, str) else "other"


class _Read(Collector):
    """Gauges read at scrape time from `read()`: (name, help, value) triples."""

    def __init__(self, read: Callable[[], Iterable[tuple[str, str, float | None]]]):
        self.read = read

    def collect(self):
        for name, text, value in self.read():
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)


class DeviceMetrics:
    """A device server's: its sync rounds (counted by the service as they end) and its store."""

    def __init__(self, store, service=None):
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
        self.registry.register(_Read(self._standing))
        if service is not None:
            service.observers.append(self.observe)

    def observe(self, report) -> None:
        self.rounds.labels("failed" if report.error else "ok").inc()
        self.round_seconds.observe(report.duration_ms / 1000)
        for direction, n in (("pushed", report.pushed), ("pulled", report.pulled), ("relayed", report.relayed),
                             ("from_snapshot", report.from_snapshot), ("conflicts", report.conflicts)):
            if n:
                self.changes.labels(direction).inc(n)

    def _standing(self):
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


class HubMetrics:
    """A hub server's: requests, changes and refusals as they happen; devices, stores, waiting
    devices and the log as they stand."""

    def __init__(self, app: Flask):
        self.app = app
        self.registry = CollectorRegistry()
        self.requests = Counter("coursesync_hub_requests", "Hub protocol requests, by call and answer",
                                ["call", "status"], registry=self.registry)
        self.changes = Counter("coursesync_hub_changes", "Changes the hub took from a push or relay, or gave "
                               "in a pull", ["direction"], registry=self.registry)
        self.refused = Counter("coursesync_hub_refusals", "Changes refused at the door and requests refused, "
                               "by reason", ["reason"], registry=self.registry)
        for direction in ("pushed", "relayed", "pulled", "healed"):
            self.changes.labels(direction)
        self.registry.register(_Read(self._standing))

    def answered(self, call: str | None, status: int, code: str | None) -> None:
        self.requests.labels(call or "other", str(status)).inc()
        if code and 400 <= status < 500 and code != "invalid_fields":
            self.refused.labels(code).inc()

    def took(self, direction: str, n: int) -> None:
        if n:
            self.changes.labels(direction).inc(n)

    def refused_changes(self, refusals: list[dict[str, Any]]) -> None:
        for r in refusals:
            self.refused.labels(refusal_kind(r)).inc()

    def _standing(self):
        ext = self.app.extensions
        counts = ext["registry"].device_counts(time.time() - DAY)
        yield "coursesync_hub_devices", "Devices with a token that is not revoked", counts["active"]
        yield "coursesync_hub_devices_seen_last_day", "Devices that pulled in the last 24 hours", counts["seen"]
        yield "coursesync_hub_user_stores_cached", "Per-user stores kept open", len(ext["hub_stores"])
        yield "coursesync_hub_user_stores_limit", "Per-user stores kept open at most", ext["hub_stores"].limit
        yield "coursesync_hub_waiting_devices", "Devices waiting for news (live sync)", len(ext["waiters"])
        sizes = ext["store"].log_sizes()
        yield "coursesync_hub_log_changes", "Changes in the log above the floors, every user's", sizes["changes"]
        yield "coursesync_hub_log_compacted_changes", "Changes compacted out of the log, every user's", \
            sizes["compacted"]


def _answer(registry: CollectorRegistry):
    # The text format every Prometheus reads (the names are ASCII: 0.0.4 and 1.0.0 write them alike).
    return current_app.response_class(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4,
                                      headers={"Cache-Control": "no-store"})


def install_device(app: Flask, store, service=None) -> DeviceMetrics:
    metrics = DeviceMetrics(store, service)
    app.extensions["metrics"] = metrics
    app.add_url_rule("/metrics", "metrics", lambda: _answer(metrics.registry))
    return metrics


def install_hub(app: Flask) -> HubMetrics:
    metrics = HubMetrics(app)
    app.extensions["metrics"] = metrics
    token = app.config["SETTINGS"].hub_metrics_token

    def serve():
        if not token:
            raise NotFound("This hub server serves no metrics: set HUB_METRICS_TOKEN, and scrape with it.",
                           code="metrics_off")
        if not token_matches(request.headers.get("Authorization"), token):
            raise Unauthorized("Scrape the metrics with Authorization: Bearer <HUB_METRICS_TOKEN>.")
        return _answer(metrics.registry)

    app.add_url_rule("/metrics", "metrics", serve)

    @app.after_request
    def count(resp):
        if request.path.startswith("/hub/v1/"):
            code = g.get("error_code")
            metrics.answered(request.endpoint.split(".")[-1] if request.endpoint else None, resp.status_code, code)
        return resp

    return metrics
