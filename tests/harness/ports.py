"""Free TCP ports on loopback."""

import socket


def free_port() -> int:
    """A port nothing listens on at the moment (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
