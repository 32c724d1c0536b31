"""chat/announcements.py: joined and left, at once when quiet, batched under churn."""

import asyncio

import pytest

from chat import announcements

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_quiet_room_hears_of_an_arrival_at_once(joined):
    observer = await joined("observer")
    # The observer's own arrival was the room's last announcement; then quiet.
    await asyncio.sleep(announcements.WINDOW_SECONDS)
    await joined("alice")
    frame = await observer.expect("joined", timeout=announcements.WINDOW_SECONDS / 2)
    assert frame == {"type": "joined", "nickname": "alice", "participants": 2}


async def test_under_churn_arrivals_and_departures_go_out_together_in_order(
    joined, make_client, monkeypatch
):
    from chat import events

    observer = await joined("observer")
    await joined("first")  # told at once; what follows falls in its window
    await observer.expect("joined", nickname="first")
    sends = []
    real_send = events.room_send

    async def counted(room_id, *frames, **kwargs):
        sends.append([f["type"] for f in frames])
        return await real_send(room_id, *frames, **kwargs)

    monkeypatch.setattr(events, "room_send", counted)
    passer = await make_client()
    await passer.join("passer-by")
    await joined("stayer")
    await passer.close()
    frame, seen = await observer.receive_until("left", nickname="passer-by")
    news = [(f["type"], f["nickname"]) for f in seen]
    assert news == [
        ("joined", "passer-by"),
        ("joined", "stayer"),
        ("left", "passer-by"),
    ]
    # One layer event for the three; its last frame has the count as it is now.
    assert sends == [["joined", "joined", "left"]]
    assert frame["participants"] == 3


async def test_a_joiner_is_not_told_of_its_own_arrival(joined):
    observer = await joined("observer")
    await joined("first")
    await observer.expect("joined", nickname="first")
    # Within the window: batched with others, still not sent to the joiner.
    late = await joined("late")
    await observer.expect("joined", nickname="late")
    assert await late.nothing(announcements.WINDOW_SECONDS * 2)


async def test_a_departure_waits_for_its_announcement_to_go_out(joined, make_client):
    observer = await joined("observer")
    leaver = await joined("leaver")  # within the window of the observer's
    await leaver.close()  # returns once its `left` was sent
    assert (await observer.expect("left", timeout=0.1))["nickname"] == "leaver"
