"""Prometheus metrics: request counts and latencies per route, bytes stored, queue depth.

Counters live in each process (with several workers, in the multiprocess
folder named by ``PROMETHEUS_MULTIPROC_DIR``); the stored-bytes and queue
gauges are read from the database at scrape time, so every worker reports
the same truth.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector

from livedata_cli.server import db

REQUESTS = Counter(
    "livedata_http_requests_total", "HTTP requests served", ["method", "route", "status"]
)
LATENCY = Histogram(
    "livedata_http_request_duration_seconds",
    "Time from request start to response end",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)


class DatabaseCollector(Collector):
    def __init__(self, database: db.Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.database.read() as conn:
            stored = conn.execute(sa.select(sa.func.coalesce(sa.func.sum(db.files.c.size), 0))).scalar_one()
            count = conn.execute(sa.select(sa.func.count()).select_from(db.files)).scalar_one()
            users = conn.execute(sa.select(sa.func.count()).select_from(db.users)).scalar_one()
            depth: dict[str, int] = dict(
                conn.execute(
                    sa.select(db.conversions.c.status, sa.func.count())
                    .where(db.conversions.c.status.in_(["queued", "running"]))
                    .group_by(db.conversions.c.status)
                ).all()
            )
        yield GaugeMetricFamily("livedata_bytes_stored", "Bytes of files stored (client bytes)", value=int(stored))
        yield GaugeMetricFamily("livedata_files", "Files stored, trash included", value=int(count))
        yield GaugeMetricFamily("livedata_users", "Accounts", value=int(users))
        queue = GaugeMetricFamily("livedata_conversion_queue_depth", "Conversion jobs waiting or running", labels=["status"])
        for status in ("queued", "running"):
            queue.add_metric([status], int(depth.get(status, 0)))
        yield queue


def observe(method: str, route: str, status: int, seconds: float) -> None:
    REQUESTS.labels(method, route, str(status)).inc()
    LATENCY.labels(method, route).observe(seconds)


def exposition(database: db.Database) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        base: Any = CollectorRegistry()
        multiprocess.MultiProcessCollector(base)  # type: ignore[no-untyped-call]
    else:
        base = REGISTRY
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(DatabaseCollector(database))
    return bytes(generate_latest(base)) + bytes(generate_latest(gauges))
