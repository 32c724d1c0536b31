"""What every client of a room ended with, against what the database holds:
the check that closes each fault test; and whether live delivery is back."""

import asyncio
import contextlib
from collections.abc import Sequence

import pytest

from .clients import ChatClient
from .database import Database


def room_texts(database: Database, room_id: int) -> list[str]:
    rows = database.query(
        "SELECT text FROM chat_message WHERE room_id = %s ORDER BY seq", (room_id,)
    )
    return [text for (text,) in rows]


async def everyone_has_everything(
    database: Database,
    room_id: int,
    clients: Sequence[ChatClient],
    sent: Sequence[str],
    timeout: float = 30,
) -> None:
    """Every client ends with every message exactly once, in seq order."""
    # Every sender has its messages confirmed (echoed back) first.
    await asyncio.gather(*(c.settle(0, timeout=timeout) for c in clients))
    stored = room_texts(database, room_id)
    # Resends after reconnects were saved once: one row per message sent.
    assert sorted(stored) == sorted(sent)
    await asyncio.gather(*(c.settle(len(stored), timeout=timeout) for c in clients))
    for client in clients:
        assert client.texts() == stored, client.nickname
        assert client.repeated_frames == 0, client.nickname


async def live_again(sender: ChatClient, receiver: ChatClient, sent: list[str]) -> None:
    """Probe until one of sender's messages reaches receiver live (within a
    quarter of a second); each probe sent is added to `sent`."""
    for index in range(200):
        probe = f"probe {index}"
        sent.append(probe)
        await sender.say(probe)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.25):
                await receiver.wait(
                    lambda probe=probe: any(
                        f["text"] == probe for f in receiver.of_type("message")
                    ),
                    "a live probe",
                )
                return
    pytest.fail(
        f"none of 200 probes from {sender.nickname} reached {receiver.nickname} live"
    )
