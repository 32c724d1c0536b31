"""
What an operator watches, in Prometheus' text format (prometheus-client):
the sockets and HTTP participants in rooms, joins, messages saved, deliveries,
refusals by error code, save latency, fan-out lag, channel-layer send failures,
the hub's pending events and the instance's heartbeats.

Each figure is counted where it happens (the modules that import this one);
reading them out is exposition(). With PROMETHEUS_MULTIPROC_DIR set (several
processes behind one port), prometheus-client keeps each process's figures in
that folder and exposition() sums them; without it, the figures are this
process's. Served at /metrics behind CHAT_METRICS_TOKEN (chat/views.py).
"""

import atexit
import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client import REGISTRY as PROCESS_REGISTRY

CONNECTIONS = Gauge(
    "chat_connections",
    "Sockets and HTTP participants in rooms on this instance, by transport.",
    ["transport"],
    multiprocess_mode="livesum",
)
JOINS = Counter("chat_joins", "Joins welcomed, by transport.", ["transport"])
MESSAGES_SAVED = Counter("chat_messages_saved", "Messages saved.")
DELIVERIES = Counter(
    "chat_deliveries", "Room events handed to sockets and HTTP participants."
)
REFUSALS = Counter("chat_refusals", "Client frames refused, by error code.", ["code"])
SAVE_SECONDS = Histogram(
    "chat_save_seconds",
    "From a lot of messages leaving for the database to their being saved.",
    buckets=(0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
FANOUT_LAG_SECONDS = Histogram(
    "chat_fanout_lag_seconds",
    "From a room event's sending to its delivery by this instance's hub.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
LAYER_SEND_FAILURES = Counter(
    "chat_layer_send_failures", "Room events the channel layer did not take."
)
HUB_PENDING = Gauge(
    "chat_hub_pending_events",
    "Room events waiting in the hub for their sockets.",
    multiprocess_mode="livesum",
)
HEARTBEATS = Counter("chat_instance_heartbeats", "Heartbeats this instance wrote.")


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # A stopped process's gauges (its connections, its pending events) leave
    # the sum with it; its counters stay counted.
    atexit.register(multiprocess.mark_process_dead, os.getpid())


def exposition() -> tuple[bytes, str]:
    """Every figure in the text format, and its content type."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(PROCESS_REGISTRY), CONTENT_TYPE_LATEST
