"""
What the chat writes to its log: one line per socket event with room, instance
and connection id, never the text of a message, and failures of the database or
Redis with their cause.
"""

import logging

import pytest
from django.conf import settings
from django.db import OperationalError

from chat.services import messages
from tests.conftest import asgi_application
from tests.harness.ports import free_port
from tests.unit.test_health import redis_layer

# The database stays open until the hub of each test is closed (conftest.py).
pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "the door code is 4711"


def formatted(record):
    """The record as the configured stdout handler writes it."""
    return logging.Formatter(settings.LOGGING["formatters"]["line"]["format"]).format(
        record
    )


def consumer_lines(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "chat.consumers"]


@pytest.fixture
def chat_log(caplog):
    # Loaded first: setting Django up for the ASGI application configures logging
    # anew, which would take caplog's handlers off the chat's loggers.
    asgi_application()
    caplog.set_level(logging.INFO, logger="chat")
    return caplog


async def test_socket_events_are_one_line_each_without_message_text(joined, chat_log):
    alice = await joined("alice")
    await alice.say(SECRET)
    assert (await alice.expect("message"))["text"] == SECRET
    await alice.close()

    lines = consumer_lines(chat_log)
    assert [line.split()[0] for line in lines] == ["connect", "join", "disconnect"]
    conns = {field for line in lines for field in line.split() if field[:5] == "conn="}
    assert len(conns) == 1
    for line in lines:
        assert " room=general " in line
        assert f" instance={settings.CHAT_INSTANCE_ID} " in line
    assert all(SECRET not in formatted(record) for record in chat_log.records)
    assert all("\n" not in formatted(record) for record in chat_log.records)


async def test_unknown_room_is_logged_with_the_room_asked_for(make_client, chat_log):
    client = await make_client("/ws/rooms/nowhere/")
    assert (await client.expect("error"))["code"] == "room_not_found"

    [connect] = [line for line in consumer_lines(chat_log) if line[:7] == "connect"]
    assert " room=nowhere " in connect


async def test_database_outage_is_one_error_line_with_its_cause(
    joined, chat_log, monkeypatch
):
    alice = await joined("alice")
    save = messages.messages_save

    def unreachable(**kwargs):
        raise OperationalError(
            'connection to server at "10.1.0.4", port 5432 failed: Connection '
            "refused\n\tIs the server running on that host?"
        )

    monkeypatch.setattr(messages, "messages_save", unreachable)
    await alice.say(SECRET)
    assert (await alice.expect("error"))["code"] == "unavailable"

    [record] = [r for r in chat_log.records if "frame_failed" in r.getMessage()]
    assert record.levelno == logging.ERROR
    line = formatted(record)
    assert "\n" not in line
    assert " room=general " in line
    assert f" instance={settings.CHAT_INSTANCE_ID} " in line
    assert "cause=OperationalError('connection to server at" in line
    assert "Connection refused Is the server running on that host?" in line
    assert SECRET not in line

    # The socket stays usable once the database is back.
    monkeypatch.setattr(messages, "messages_save", save)
    await alice.say("back")
    assert (await alice.expect("message"))["seq"] == 1


async def test_redis_outage_is_logged_with_its_cause(joined, chat_log, settings):
    port = free_port()  # nothing listens there
    settings.CHANNEL_LAYERS = redis_layer(f"redis://127.0.0.1:{port}/0")

    alice = await joined("alice")
    await alice.say(SECRET)
    # The layer did not take it; the sender still gets the saved copy.
    assert (await alice.expect("message"))["seq"] == 1

    lines = [formatted(r) for r in chat_log.records]
    [sent] = [
        line for line in lines if "layer_send_failed" in line and "=message" in line
    ]
    assert "cause=ConnectionError(" in sent
    assert f"Error 111 connecting to 127.0.0.1:{port}." in sent
    assert any("layer_group_add_failed" in line for line in lines)
    assert all(SECRET not in line for line in lines)
