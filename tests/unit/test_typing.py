"""The typing aggregator (chat/typing.py): one layer event per room and interval."""

import asyncio
import itertools
import time

import pytest

from chat import counters, drops, events
from chat import typing as typing_module
from chat.typing import TypingAggregator

COALESCE = 0.05
REPEAT = 0.4


@pytest.fixture(autouse=True)
def _short_intervals(monkeypatch):
    monkeypatch.setattr(typing_module, "COALESCE_SECONDS", COALESCE)
    monkeypatch.setattr(typing_module, "REPEAT_SECONDS", REPEAT)
    counters.reset()
    drops.forget()


@pytest.fixture
def sent(monkeypatch):
    """The layer events the aggregator sends: (time, room, frames, excludes)."""

    class Calls(list):
        answer = [True]

    calls = Calls()
    answer = calls.answer

    async def room_send(room_id, *frames, exclude=None, close=None, excludes=None):
        calls.append((time.monotonic(), room_id, list(frames), excludes))
        return answer[0]

    monkeypatch.setattr(events, "room_send", room_send)
    return calls


async def idle(aggregator):
    """Wait until no room has signals waiting."""
    async with asyncio.timeout(2):
        while tasks := [r.task for r in aggregator.rooms.values() if r.task]:
            await asyncio.gather(*tasks)


def states(call):
    return [(f["type"], f["nickname"]) for f in call[2]]


async def test_the_first_signal_goes_at_once_the_rest_together_after_the_interval(
    sent,
):
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-alice", True)
    await asyncio.sleep(0.01)
    assert [states(c) for c in sent] == [[("typing", "alice")]]
    for nickname in ("bob", "carol", "dave"):
        aggregator.signal(1, nickname, f"c-{nickname}", True)
    await asyncio.sleep(0)
    assert len(sent) == 1  # they wait for the end of the interval
    await idle(aggregator)
    assert [states(c) for c in sent] == [
        [("typing", "alice")],
        [("typing", "bob"), ("typing", "carol"), ("typing", "dave")],
    ]
    assert sent[1][0] - sent[0][0] >= COALESCE * 0.9


async def test_at_most_one_event_per_room_and_interval_under_a_storm(sent):
    aggregator = TypingAggregator()
    started = time.monotonic()
    while time.monotonic() - started < COALESCE * 6:
        for index in range(50):
            aggregator.signal(1, f"typer{index}", f"c{index}", index % 3 != 0)
        await asyncio.sleep(0.002)
    await idle(aggregator)
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sent)]
    assert len(sent) <= 8
    assert all(gap >= COALESCE * 0.9 for gap in gaps)
    # One frame per typist at most in each event.
    for call in sent:
        nicknames = [f["nickname"] for f in call[2]]
        assert len(nicknames) == len(set(nicknames))


async def test_a_stop_cancels_a_waiting_typing_and_is_never_lost(sent):
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-alice", True)  # goes at once
    await asyncio.sleep(0.01)
    aggregator.signal(1, "bob", "c-bob", True)
    aggregator.signal(1, "bob", "c-bob", False)
    aggregator.signal(1, "alice", "c-alice", True)
    aggregator.signal(1, "alice", "c-alice", False)
    await idle(aggregator)
    assert [states(c) for c in sent] == [
        [("typing", "alice")],
        [("stop_typing", "bob"), ("stop_typing", "alice")],
    ]


async def test_the_latest_state_wins_whatever_came_between(sent):
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-alice", False)
    await asyncio.sleep(0.01)
    for active in (True, False, True, False, True):
        aggregator.signal(1, "alice", "c-alice", active)
    await idle(aggregator)
    assert [states(c) for c in sent] == [
        [("stop_typing", "alice")],
        [("typing", "alice")],
    ]


async def test_a_typing_shown_already_is_repeated_only_after_a_while(sent):
    aggregator = TypingAggregator()
    started = time.monotonic()
    # Typing at a high rate for longer than the repeat interval.
    while time.monotonic() - started < REPEAT * 1.6:
        aggregator.signal(1, "alice", "c-alice", True)
        await asyncio.sleep(0.01)
    await idle(aggregator)
    assert [states(c) for c in sent] == [[("typing", "alice")]] * 2
    assert sent[1][0] - sent[0][0] >= REPEAT * 0.9
    # After a stop the next typing goes out at once: it is news again.
    aggregator.signal(1, "alice", "c-alice", False)
    await idle(aggregator)
    aggregator.signal(1, "alice", "c-alice", True)
    await idle(aggregator)
    assert [states(c) for c in sent[2:]] == [
        [("stop_typing", "alice")],
        [("typing", "alice")],
    ]


async def test_a_typing_again_right_after_a_stop_goes_out_though_the_stop_did_not(
    sent,
):
    # Typed, sent (the stop waits its turn, and the message clears the typing
    # on every page), and started typing again within the interval: the new
    # typing replaces the waiting stop and must still be shown.
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-alice", True)
    await asyncio.sleep(0.01)
    aggregator.signal(1, "alice", "c-alice", False)
    aggregator.signal(1, "alice", "c-alice", True)
    await idle(aggregator)
    assert [states(c) for c in sent] == [[("typing", "alice")]] * 2


async def test_a_new_socket_of_a_nickname_shown_typing_is_relayed_at_once(sent):
    # The page was reloaded mid-typing: its stop never came, and the new
    # page's typing is news to the room, not a repeat.
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-old", True)
    await idle(aggregator)
    aggregator.signal(1, "alice", "c-new", True)
    await idle(aggregator)
    assert [(states(c), c[3]) for c in sent] == [
        ([("typing", "alice")], ["c-old"]),
        ([("typing", "alice")], ["c-new"]),
    ]


async def test_each_frame_keeps_its_own_typist_out(sent):
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-alice", True)
    await asyncio.sleep(0.01)
    aggregator.signal(1, "bob", "c-bob", True)
    aggregator.signal(1, "carol", "c-carol", False)
    await idle(aggregator)
    assert [(states(c), c[3]) for c in sent] == [
        ([("typing", "alice")], ["c-alice"]),
        ([("typing", "bob"), ("stop_typing", "carol")], ["c-bob", "c-carol"]),
    ]


async def test_rooms_are_coalesced_apart(sent):
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-alice", True)
    aggregator.signal(2, "alice", "c-alice-2", True)
    await idle(aggregator)
    assert sorted((c[1], states(c)) for c in sent) == [
        (1, [("typing", "alice")]),
        (2, [("typing", "alice")]),
    ]


async def test_a_typing_the_layer_did_not_take_goes_again_on_the_next_signal(sent):
    aggregator = TypingAggregator()
    sent.answer[0] = False
    aggregator.signal(1, "alice", "c-alice", True)
    await idle(aggregator)
    sent.answer[0] = True
    aggregator.signal(1, "alice", "c-alice", True)
    await idle(aggregator)
    assert [states(c) for c in sent] == [[("typing", "alice")]] * 2


async def test_quiet_rooms_are_forgotten(sent):
    aggregator = TypingAggregator()
    aggregator.signal(1, "alice", "c-alice", True)
    aggregator.signal(1, "alice", "c-alice", False)
    await idle(aggregator)
    assert aggregator.rooms == {}


def test_a_signal_over_the_budget_is_counted_as_a_drop():
    typing_module.typing_refuse(room_id=7)
    typing_module.typing_refuse(room_id=7)
    assert counters.get("typing_over_budget.typing") == 2


# Through the whole ASGI application -------------------------------------------


@pytest.mark.django_db(transaction=True)
async def test_typists_in_one_event_each_miss_only_their_own(joined):
    alice = await joined("alice")
    carol = await joined("carol")
    bob = await joined("bob")
    await alice.expect("joined", nickname="bob")
    await carol.expect("joined", nickname="bob")
    # Bob's goes at once; alice's and carol's, sent within its interval, go
    # out after it together.
    await bob.send({"type": "typing"})
    await alice.expect("typing", nickname="bob")
    await carol.expect("typing", nickname="bob")
    await alice.send({"type": "typing"})
    await carol.send({"type": "typing"})
    typing = {(await bob.expect("typing"))["nickname"] for _ in range(2)}
    assert typing == {"alice", "carol"}
    await alice.expect("typing", nickname="carol")
    await carol.expect("typing", nickname="alice")
    await alice.send({"type": "stop_typing"})
    assert await bob.expect("stop_typing") == {
        "type": "stop_typing",
        "nickname": "alice",
    }
    assert await carol.expect("stop_typing", nickname="alice")
    assert await alice.nothing(0.3)
