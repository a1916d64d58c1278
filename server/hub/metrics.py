"""GET /metrics of a hub server, in Prometheus's text format (prometheus_client): requests,
changes and refusals counted as they happen; devices, stores, waiting devices and the log read
when the scrape comes. Served only to a scrape that brings HUB_METRICS_TOKEN (a device's token
is not enough: the figures are every user's), and not at all while that is unset."""

from __future__ import annotations

import time
from typing import Any

from flask import Flask, Response, g, request
from prometheus_client import CollectorRegistry, Counter

from server.core.errors import NotFound, Unauthorized
from server.web.http import token_matches
from server.web.metrics import Read, Standing, answer

DAY = 86_400
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
        self.registry.register(Read(self._standing))

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

    def _standing(self) -> Standing:
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


def install(app: Flask) -> HubMetrics:
    metrics = HubMetrics(app)
    app.extensions["metrics"] = metrics
    token = app.config["SETTINGS"].hub_metrics_token

    def serve() -> Response:
        if not token:
            raise NotFound("This hub server serves no metrics: set HUB_METRICS_TOKEN, and scrape with it.",
                           code="metrics_off")
        if not token_matches(request.headers.get("Authorization"), token):
            raise Unauthorized("Scrape the metrics with Authorization: Bearer <HUB_METRICS_TOKEN>.")
        return answer(metrics.registry)

    app.add_url_rule("/metrics", "metrics", serve)

    @app.after_request
    def count(resp: Response) -> Response:
        if request.path.startswith("/hub/v1/"):
            code = g.get("error_code")
            metrics.answered(request.endpoint.split(".")[-1] if request.endpoint else None, resp.status_code, code)
        return resp

    return metrics
