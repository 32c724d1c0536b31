"""A stopping server (chat/draining.py) sends a socket that comes now on."""

import signal

import pytest

from chat import draining

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_socket_that_comes_while_draining_is_told_to_reconnect(
    monkeypatch, make_client
):
    monkeypatch.setattr(draining, "_draining", True)
    client = await make_client()
    error = await client.expect("error", code="unavailable")
    assert "restarting" in error["message"]
    closed = await client.ws.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1012}


def test_nothing_is_put_in_front_of_a_reactor_that_is_not_running():
    # uvicorn and the tests: no Twisted reactor runs, SIGTERM stays theirs.
    before = signal.getsignal(signal.SIGTERM)
    draining.install(list)
    assert signal.getsignal(signal.SIGTERM) is before
