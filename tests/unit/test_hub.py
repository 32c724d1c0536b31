"""
The hub's pending events (chat/hub.py): what goes first when the bound is
reached, per-frame excludes, and the event forms of older instances. The hub is
driven directly through dispatch, with stand-in sockets: no database.
"""

import asyncio
import contextlib
import logging

import pytest

from chat import counters, drops, events
from chat import hub as hub_module
from chat.hub import Hub
from tests.harness.waiting import wait_until_async

ROOM = 1


@pytest.fixture(autouse=True)
def _fresh_counts():
    counters.reset()
    drops.forget()


class Socket:
    """A stand-in for a consumer: keeps the batches the hub hands it."""

    def __init__(self, connection_id):
        self.connection_id = connection_id
        self.got = []

    async def deliver(self, batch):
        self.got.extend(e.frame for e in batch.wanted_by(self.connection_id, 0, ""))


@pytest.fixture
def hub():
    hub = Hub()
    hub.rooms[ROOM] = set()
    return hub


def message(seq):
    return {"type": "message", "id": seq, "seq": seq, "room": "general",
            "nickname": "x", "text": f"m{seq}", "ts": "2026-01-01T00:00:00Z",
            "client_id": None}  # fmt: skip


def typing(nickname, active=True):
    return {"type": "typing" if active else "stop_typing", "nickname": nickname}


def event(*frames, **fields):
    return {"type": events.EVENT_TYPE, "room": ROOM, "frames": list(frames), **fields}


def pending(hub):
    return [
        (e.frame["type"], e.frame.get("seq") or e.frame.get("nickname"))
        for e in hub.pending.get(ROOM, [])
    ]


async def test_waiting_typing_is_dropped_to_make_room_for_a_message(hub, monkeypatch):
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 3)
    hub.dispatch(event(typing("a"), typing("b"), typing("c", active=False)))
    hub.dispatch(event(message(1)))
    assert pending(hub) == [("message", 1)]
    assert hub.pending_count == 1
    assert counters.get("hub_overloaded.typing") == 3
    # Room again for typing below the bound.
    hub.dispatch(event(typing("d")))
    assert pending(hub) == [("message", 1), ("typing", "d")]


async def test_typing_never_pushes_out_a_message(hub, monkeypatch):
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 2)
    hub.dispatch(event(message(1), message(2)))
    hub.dispatch(event(typing("a"), typing("b", active=False)))
    assert pending(hub) == [("message", 1), ("message", 2)]
    assert counters.get("hub_overloaded.typing") == 2


async def test_a_message_past_the_bound_with_no_typing_left_is_dropped(
    hub, monkeypatch
):
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 3)
    hub.dispatch(event(message(1), typing("a")))
    hub.dispatch(event(message(2), message(3), message(4)))
    # The typing made room for one; the lot is cut where the bound falls.
    assert pending(hub) == [("message", 1), ("message", 2), ("message", 3)]
    assert counters.get("hub_overloaded.typing") == 1
    assert counters.get("hub_overloaded.message") == 1


@pytest.mark.parametrize(
    "frame",
    [
        {"type": "joined", "nickname": "n", "participants": 2},
        {"type": "left", "nickname": "n", "participants": 1},
        {"type": "deleted", "ids": [1]},
        {"type": "error", "code": "room_archived", "message": "archived"},
    ],
)
async def test_room_events_but_typing_come_before_typing(hub, monkeypatch, frame):
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 1)
    hub.dispatch(event(typing("a")))
    hub.dispatch(event(frame, close=4410 if frame["type"] == "error" else None))
    assert [e.frame for e in hub.pending[ROOM]] == [frame]


async def test_typing_in_the_lot_itself_gives_way(hub, monkeypatch):
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 2)
    hub.dispatch(event(typing("a"), typing("b"), message(1)))
    assert pending(hub) == [("message", 1)]


async def test_drops_at_the_bound_are_logged_once_per_interval_with_counts(
    hub, monkeypatch
):
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 1)
    lines = []
    handler = logging_handler(lines)
    try:
        hub.dispatch(event(message(1)))
        for seq in range(2, 12):
            hub.dispatch(event(message(seq), typing(f"t{seq}")))
    finally:
        handler()
    assert counters.get("hub_overloaded.message") == 10
    assert counters.get("hub_overloaded.typing") == 10
    # The first of each kind at once; the rest waits for the interval.
    assert sorted(line.split()[:3] for line in lines) == [
        ["hub_overloaded", "type=message", "dropped=1"],
        ["hub_overloaded", "type=typing", "dropped=1"],
    ]


def logging_handler(lines):
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = logging.getLogger("chat.drops")
    logger.addHandler(handler)
    return lambda: logger.removeHandler(handler)


async def test_each_frame_has_its_own_exclude(hub):
    alice, bob, carol = Socket("c-alice"), Socket("c-bob"), Socket("c-carol")
    hub.rooms[ROOM] = {alice, bob, carol}
    flushing = asyncio.create_task(hub._flush())
    try:
        hub.dispatch(
            event(typing("alice"), typing("bob"), excludes=["c-alice", "c-bob"])
        )
        # An older instance's event: one exclude for every frame.
        hub.dispatch(event(typing("carol"), message(1), exclude="c-carol"))
        await asyncio.sleep(0.05)
    finally:
        flushing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await flushing
    names = {
        s.connection_id: [f.get("nickname") for f in s.got] for s in (alice, bob, carol)
    }
    assert names == {
        "c-alice": ["bob", "carol", "x"],
        "c-bob": ["alice", "carol", "x"],
        "c-carol": ["alice", "bob"],
    }


async def test_excludes_that_do_not_match_the_frames_fall_back_to_exclude(hub):
    hub.dispatch(event(typing("a"), typing("b"), excludes=["c-a"], exclude="c-x"))
    assert [e.exclude for e in hub.pending[ROOM]] == ["c-x", "c-x"]


async def test_the_one_frame_form_of_older_instances_is_queued(hub):
    hub.dispatch(
        {"type": events.EVENT_TYPE, "room": ROOM, "frame": typing("a"), "exclude": "c"}
    )
    assert [(e.frame, e.exclude) for e in hub.pending[ROOM]] == [(typing("a"), "c")]


async def test_a_bad_event_is_counted_and_queues_nothing(hub):
    hub.dispatch(event({"nickname": "no type"}))
    hub.dispatch(event(typing("a"), "not a frame"))
    assert ROOM not in hub.pending
    assert counters.get("hub_bad_event.event") == 2


class GroupLayer:
    """A stand-in layer that records the hub's group_adds."""

    def __init__(self):
        self.added = []

    async def group_add(self, group, channel):
        self.added.append(group)


async def test_groups_are_renewed_rarely_and_at_once_after_the_layer_failed(
    hub, monkeypatch
):
    monkeypatch.setattr(hub_module, "GROUP_REFRESH_SECONDS", 0.01)
    layer = GroupLayer()
    hub.layer, hub.channel = layer, "hub-test"
    renewing = asyncio.ensure_future(hub._refresh_groups())
    try:
        # Twenty ticks with a working layer: nothing to renew yet.
        await asyncio.sleep(0.2)
        assert layer.added == []
        hub.layer_failed = True  # as a failed receive sets it
        await wait_until_async(lambda: layer.added, 5, "the groups renewed")
        assert layer.added == [events.group_name(ROOM)]
        assert not hub.layer_failed
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
