"""A throwaway certificate authority and a server certificate for localhost,
made with openssl, for TLS-only Redis."""

import shutil
import subprocess
from pathlib import Path

import pytest


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(
        ["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60
    )


def make_certificates(workdir: Path, name: str = "ca") -> dict[str, str]:
    """A certificate authority and a certificate for localhost, for servers and
    for the nodes of a cluster, which present it to each other as clients."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    ca_key, ca_cert = f"{name}.key", f"{name}.crt"
    openssl("genrsa", "-out", ca_key, "2048", cwd=workdir)
    openssl(
        "req", "-x509", "-new", "-key", ca_key, "-sha256", "-days", "2",
        "-subj", f"/CN=Test {name}", "-out", ca_cert, cwd=workdir,
    )  # fmt: skip
    (workdir / "san.cnf").write_text(
        "subjectAltName = DNS:localhost, IP:127.0.0.1\n"
        "extendedKeyUsage = serverAuth, clientAuth\n"
    )
    openssl("genrsa", "-out", "redis.key", "2048", cwd=workdir)
    openssl(
        "req", "-new", "-key", "redis.key", "-subj", "/CN=localhost",
        "-out", "redis.csr", cwd=workdir,
    )  # fmt: skip
    openssl(
        "x509", "-req", "-in", "redis.csr", "-CA", ca_cert, "-CAkey", ca_key,
        "-CAcreateserial", "-days", "2", "-sha256", "-extfile", "san.cnf",
        "-out", "redis.crt", cwd=workdir,
    )  # fmt: skip
    return {
        "ca": str(workdir / ca_cert),
        "cert": str(workdir / "redis.crt"),
        "key": str(workdir / "redis.key"),
    }
