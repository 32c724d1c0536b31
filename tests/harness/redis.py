"""A private redis-server: no persistence, plain TCP or TLS, with a password if
asked; never the system Redis on 6379."""

import shutil
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
    ) -> None:
        super().__init__("redis", Path(workdir) / "redis.log")
        self.binary = require_redis_server()
        self.workdir = Path(workdir)
        self.port = free_port()
        # tls: {"cert": path, "key": path, "ca": path}; plain TCP is then off.
        self.tls = tls
        self.password = password

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
        self.spawn(args)
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
