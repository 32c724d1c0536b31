"""
The benchmark's servers: the test harness's cluster (tests/harness/), a
private redis-server and server processes on loopback, over a throwaway database
(PostgreSQL beside DATABASE_URL, SQLite otherwise), with load settings.
"""

import asyncio
import os
import sys
import tempfile
from pathlib import Path

from tests.harness.database import Database
from tests.harness.redis import RedisServer
from tests.harness.servers import Cluster as ProcessCluster
from tests.harness.servers import Daphne, Uvicorn, server_env

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
KINDS = {"daphne": Daphne, "uvicorn": Uvicorn}


def cpu_seconds(pid):
    """User + system CPU seconds a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_bytes(pid):
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE


class Cluster:
    """redis-server (or `shards` of them) + `instances` server processes; an async
    context manager."""

    def __init__(
        self,
        *,
        instances=2,
        server="daphne",
        layer="core",
        extra_env=None,
        server_args=(),
        shards=1,
    ):
        self.instances = instances
        self.shards = shards
        self.kind = KINDS[server]
        self.server_args = server_args
        self.env = {
            "CHAT_CHANNEL_LAYER": layer,
            "LOG_LEVEL": "WARNING",
            # The production defaults, not the tests' fast heartbeat.
            "CHAT_HEARTBEAT_SECONDS": 10,
            "CHAT_INSTANCE_TIMEOUT_SECONDS": 30,
            **(extra_env or {}),
        }

    def server_pids(self):
        return [server.pid for server in self.cluster.servers]

    @property
    def redis_pids(self):
        return [self.cluster.redis.pid] + [shard.pid for shard in self.more_shards]

    def http_urls(self):
        return [s.http for s in self.cluster.servers]

    def ws_urls(self, slug):
        return [(s.ws_url(slug), s.origin) for s in self.cluster.servers]

    async def __aenter__(self):
        return await asyncio.to_thread(self._start)

    async def __aexit__(self, *exc):
        await asyncio.to_thread(self._stop)

    def _start(self):
        self.workdir = tempfile.TemporaryDirectory(prefix="chat-bench-")
        self.database = Database(self.workdir.name)
        # The room page (which the HTTP clients open for their cookies) needs
        # the static files collected, as in a deployment.
        self.env["STATIC_ROOT"] = str(Path(self.workdir.name) / "static")
        self.more_shards = []
        for number in range(2, self.shards + 1):
            shard_dir = Path(self.workdir.name) / f"shard{number}"
            shard_dir.mkdir()
            self.more_shards.append(RedisServer(shard_dir))
        first = RedisServer(self.workdir.name)
        self.cluster = ProcessCluster(
            self.workdir.name,
            self.database,
            instances=0,
            redis=first,
            redis_url=",".join(r.url for r in [first, *self.more_shards]),
            env=self.env,
        )
        try:
            for shard in self.more_shards:
                shard.start()
            self.database.create(server_env(self.database, "", **self.env))
            self.database.manage("collectstatic", "--noinput", "-v", "0")
            self.cluster.start()
            for _ in range(self.instances):
                self.cluster.add_server(self.kind, args=self.server_args)
        except BaseException:
            self._stop()
            raise
        self.baseline_rss = sum(rss_bytes(pid) for pid in self.server_pids())
        return self

    def _stop(self):
        try:
            tracebacks = self.cluster.tracebacks()
            self.cluster.close()
            for shard in self.more_shards:
                shard.stop()
            if tracebacks:
                print(tracebacks, file=sys.stderr)
        finally:
            self.database.drop()
            self.workdir.cleanup()
