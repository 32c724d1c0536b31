"""
What REDIS_URL reaches, asked once as a server starts: standalone Redis servers,
or nodes of a Redis Cluster (Azure Managed Redis with its default OSS clustering
policy is one).

channels-redis's core layer cannot run on a cluster: one send touches keys in
several hash slots, and the node that does not hold a slot answers MOVED, which
the layer does not follow (channels_redis issue 420). Rather than fail at the
first message, a server given one refuses to start and says what to set. The
pub/sub layer runs on a cluster: PUBLISH on any node reaches the subscribers on
every node, and it stores no keys.
"""

import logging
from typing import Any

import redis
import redis.sentinel
from django.conf import settings

from .logs import cause

logger = logging.getLogger(__name__)

# Set by check_at_start(): whether the configured Redis is a cluster, for the
# clients that must then be cluster-aware (the shared rate limits).
clustered = False

# Short: a server that cannot reach Redis starts anyway and finds out later.
ASK_TIMEOUT_SECONDS = 3

CORE_ON_CLUSTER = (
    "REDIS_URL reaches a Redis Cluster ({address}: cluster_enabled is 1), and "
    "CHAT_CHANNEL_LAYER is 'core': channels-redis's core layer cannot run on a "
    "cluster (its commands span hash slots and fail with MOVED). Set "
    "CHAT_CHANNEL_LAYER=pubsub, or use a Redis that is not clustered (Azure Managed "
    "Redis: the Enterprise clustering policy). docs/scaling.md, 'Redis Cluster'."
)


def _layer_hosts() -> list[dict[str, Any]]:
    layer: dict[str, Any] = settings.CHANNEL_LAYERS["default"]
    return list(layer.get("CONFIG", {}).get("hosts", []))


def _client(host: dict[str, Any], timeout: float) -> redis.Redis:
    """A client of its own for one of the layer's hosts, with its options: the
    server its URL names, or the primary its sentinels name."""
    options = dict(host)
    options["socket_timeout"] = timeout
    options["socket_connect_timeout"] = timeout
    if "sentinels" in options:
        sentinels = redis.sentinel.Sentinel(
            options.pop("sentinels"), sentinel_kwargs=options.pop("sentinel_kwargs")
        )
        return sentinels.master_for(options.pop("master_name"), **options)
    return redis.Redis.from_url(options.pop("address"), **options)


def is_cluster(host: dict[str, Any]) -> bool:
    """Whether the Redis at one of the layer's hosts is a cluster node."""
    client = _client(host, ASK_TIMEOUT_SECONDS)
    try:
        return bool(client.info("cluster").get("cluster_enabled"))
    finally:
        client.close()


def ping_shards(timeout: float) -> None:
    """
    PING each of several Redis servers (shards); raise naming the first that
    does not answer. With one server the layer's own round trip says as much;
    with several it reaches only the shard its channel hashes to, and the rooms
    on any other would go quiet unseen.
    """
    hosts = _layer_hosts()
    if len(hosts) < 2:
        return
    for number, host in enumerate(hosts, 1):
        client = _client(host, timeout)
        try:
            client.ping()
        except redis.RedisError as exc:
            raise ConnectionError(f"shard {number} of {len(hosts)}: {exc}") from exc
        finally:
            client.close()


def check_at_start() -> None:
    """
    Ask each configured Redis whether it is a cluster; stop the process with a
    message saying what to set when the layer cannot run on it. A Redis that
    does not answer is logged and left to the health probe.
    """
    global clustered
    for host in _layer_hosts():
        try:
            found = is_cluster(host)
        except redis.RedisError as exc:
            logger.warning("redis_topology_unknown cause=%s", cause(exc))
            continue
        if found and settings.CHAT_CHANNEL_LAYER == "core":
            address = redis.connection.parse_url(host.get("address", "redis://"))
            where = f"{address.get('host', 'localhost')}:{address.get('port', 6379)}"
            raise SystemExit(CORE_ON_CLUSTER.format(address=where))
        clustered = clustered or found
