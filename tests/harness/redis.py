"""A private redis-server: no persistence, plain TCP or TLS, with a password if
asked; never the system Redis on 6379. Or a private Redis Cluster of three."""

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import pytest

from .ports import free_port
from .process import START_TIMEOUT, Process
from .waiting import wait_until

if TYPE_CHECKING:
    import redis


def require_redis_server() -> str:
    path = shutil.which("redis-server")
    if path is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    return path


class RedisServer(Process):
    """A private redis-server without persistence; stop() and start() again keep
    the port, as a restarted managed Redis would (and it comes back empty)."""

    def __init__(
        self,
        workdir: str | Path,
        *,
        tls: dict[str, str] | None = None,
        password: str | None = None,
        args: Sequence[str] = (),
    ) -> None:
        super().__init__("redis", Path(workdir) / "redis.log")
        self.binary = require_redis_server()
        self.workdir = Path(workdir)
        self.port = free_port()
        # tls: {"cert": path, "key": path, "ca": path}; plain TCP is then off.
        self.tls = tls
        self.password = password
        self.args = list(args)

    def start(self) -> None:
        args = [self.binary, "--save", "", "--appendonly", "no"]
        args += ["--bind", "127.0.0.1", "--dir", str(self.workdir)]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port)]
            args += ["--tls-cert-file", self.tls["cert"]]
            args += ["--tls-key-file", self.tls["key"]]
            args += ["--tls-ca-cert-file", self.tls["ca"]]
            args += ["--tls-auth-clients", "no"]
        else:
            args += ["--port", str(self.port)]
        if self.password:
            args += ["--requirepass", self.password]
        self.spawn(args + self.args)
        wait_until(self._answers, START_TIMEOUT, f"redis-server on {self.port}")

    def _answers(self) -> bool:
        if not self.alive:
            log = self.log()[-2000:]
            # A build without TLS stops at the first tls- option it reads.
            if self.tls and "Bad directive" in log and "tls" in log:
                pytest.skip(f"redis-server has no TLS support here:\n{log}")
            pytest.fail(f"redis-server exited:\n{log}")
        try:
            return bool(self.client().ping())
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def client(self) -> "redis.Redis":
        """A redis-py client for inspecting what the layer stored."""
        import redis

        if self.tls:
            # The certificate is made out to localhost.
            return redis.Redis(
                host="localhost",
                port=self.port,
                socket_timeout=2,
                password=self.password,
                ssl=True,
                ssl_ca_certs=self.tls["ca"],
            )
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=2, password=self.password
        )

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def password_url(password: str, port: int, host: str = "localhost") -> str:
    """rediss:// URL with the key URL-encoded, as Azure's keys need."""
    return f"rediss://:{quote(password, safe='')}@{host}:{port}/0"


class RedisCluster:
    """
    Three private redis-server nodes joined into a Redis Cluster (no replicas),
    over TLS if asked; started and stopped together. `url` names the first node,
    as an operator names a cluster by one of its addresses.
    """

    def __init__(
        self, workdir: str | Path, *, tls: dict[str, str] | None = None
    ) -> None:
        self.tls = tls
        self.nodes = []
        for index in range(3):
            node_dir = Path(workdir) / f"node{index}"
            node_dir.mkdir(parents=True, exist_ok=True)
            args = ["--cluster-enabled", "yes", "--cluster-port", str(free_port())]
            args += ["--cluster-config-file", str(node_dir / "nodes.conf")]
            if tls:
                args += ["--tls-cluster", "yes"]
            self.nodes.append(RedisServer(node_dir, tls=tls, args=args))

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        redis_cli = shutil.which("redis-cli")
        if redis_cli is None:
            pytest.skip("redis-cli is not installed (apt-get install redis-tools)")
        command = [redis_cli]
        if self.tls:
            command += ["--tls", "--cacert", self.tls["ca"]]
        command += ["--cluster", "create"]
        command += [f"127.0.0.1:{node.port}" for node in self.nodes]
        command += ["--cluster-yes"]
        subprocess.run(command, check=True, capture_output=True, timeout=60)
        wait_until(self._formed, START_TIMEOUT, "the cluster's slots all served")

    def _formed(self) -> bool:
        states = [node.client().execute_command("CLUSTER INFO") for node in self.nodes]
        return all(state.get("cluster_state") == "ok" for state in states)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def keys(self, pattern: str) -> list[bytes]:
        """Keys matching `pattern` on every node."""
        return [key for node in self.nodes for key in node.client().keys(pattern)]

    @property
    def url(self) -> str:
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://127.0.0.1:{self.nodes[0].port}/0"


class RedisSentinel(Process):
    """
    A primary, a replica of it and one sentinel watching them, all private;
    started and stopped together. The sentinel fails over one second after the
    primary stops answering.
    """

    MASTER = "mymaster"

    def __init__(self, workdir: str | Path) -> None:
        workdir = Path(workdir)
        super().__init__("sentinel", workdir / "sentinel.log")
        self.binary = require_redis_server()
        for name in ("primary", "replica"):
            (workdir / name).mkdir(parents=True, exist_ok=True)
        self.primary = RedisServer(workdir / "primary")
        replica_of = ["--replicaof", "127.0.0.1", str(self.primary.port)]
        self.replica = RedisServer(workdir / "replica", args=replica_of)
        self.config = workdir / "sentinel.conf"
        self.port = free_port()

    def start(self) -> None:
        self.primary.start()
        self.replica.start()
        wait_until(self._replicating, START_TIMEOUT, "the replica in step")
        # The sentinel rewrites its configuration file as it learns.
        self.config.write_text(
            f"port {self.port}\nbind 127.0.0.1\n"
            f"sentinel monitor {self.MASTER} 127.0.0.1 {self.primary.port} 1\n"
            f"sentinel down-after-milliseconds {self.MASTER} 1000\n"
            f"sentinel failover-timeout {self.MASTER} 5000\n"
        )
        self.spawn([self.binary, str(self.config), "--sentinel"])
        wait_until(self._watching, START_TIMEOUT, "the sentinel to see the replica")

    def _replicating(self) -> bool:
        return (
            self.replica.client().info("replication").get("master_link_status") == "up"
        )

    def client(self) -> "redis.Redis":
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=2)

    def _watching(self) -> bool:
        if not self.alive:
            pytest.fail(f"redis-sentinel exited:\n{self.log()[-2000:]}")
        try:
            return bool(self.client().sentinel_slaves(self.MASTER))
        except Exception:  # noqa: BLE001 - not up yet
            return False

    def primary_port(self) -> int:
        """The port of the server the sentinel names as primary now."""
        _host, port = self.client().sentinel_get_master_addr_by_name(self.MASTER)
        return int(port)

    def stop(self, timeout: float = 10) -> None:
        super().stop(timeout)
        self.replica.stop()
        self.primary.stop()

    @property
    def env(self) -> dict[str, str]:
        """What a server is told to find the primary through the sentinel."""
        return {
            "REDIS_URL": "",
            "REDIS_SENTINELS": f"127.0.0.1:{self.port}",
            "REDIS_SENTINEL_MASTER": self.MASTER,
        }

    @property
    def url(self) -> str:
        """The primary at the start (servers are told of the sentinel instead)."""
        return self.primary.url
