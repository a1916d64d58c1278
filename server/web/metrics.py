"""What both apps' GET /metrics share: gauges read when the scrape comes, and the answer in
Prometheus's text format. Each app keeps a registry of its own (server/device/metrics.py,
server/hub/metrics.py). No label names a user or a device: their number is bounded by the code,
not by the people using it."""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

from flask import Response, current_app
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.registry import Collector

Standing = Iterable[tuple[str, str, float | None]]


class Read(Collector):
    """Gauges read at scrape time from `read()`: (name, help, value) triples; a None value is
    left out."""

    def __init__(self, read: Callable[[], Standing]):
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        for name, text, value in self.read():
            if value is not None:
                yield GaugeMetricFamily(name, text, value=value)


def answer(registry: CollectorRegistry) -> Response:
    # The text format every Prometheus reads (the names are ASCII: 0.0.4 and 1.0.0 write them alike).
    return current_app.response_class(generate_latest(registry), content_type=CONTENT_TYPE_PLAIN_0_0_4,
                                      headers={"Cache-Control": "no-store"})
