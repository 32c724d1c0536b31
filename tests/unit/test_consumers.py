"""The WebSocket protocol, driven through the whole ASGI application."""

import asyncio

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth import get_user_model

from chat.hub import get_hub
from chat.models import Connection, Message, Room
from chat.services import moderation, save_queue
from tests.conftest import Client, database_thread_held, saves_held

pytestmark = pytest.mark.django_db(transaction=True)


async def test_welcome_greets_with_room_count_users_and_history(joined, make_client):
    alice = await joined("alice")
    await alice.say("hello")
    await alice.expect("message", text="hello")
    bob = await make_client()
    welcome = await bob.join("bob")
    assert welcome["nickname"] == "bob"
    assert welcome["room"] == {
        "slug": "general",
        "name": "General",
        "topic": "Anything goes.",
        "slow_mode_seconds": 0,
        "members_only": False,
    }
    # Bob is not the author of Alice's message, and moderates nothing.
    assert welcome["you"]["author"] != welcome["history"][0]["author"]
    assert welcome["you"]["moderator"] is False
    assert welcome["participants"] == 2
    assert welcome["users"] == ["alice", "bob"]
    assert [m["text"] for m in welcome["history"]] == ["hello"]
    assert welcome["last_seq"] == welcome["history"][-1]["seq"]


async def test_two_clients_see_each_others_messages_once(joined):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined", nickname="bob", participants=2)
    await alice.say("hi bob", client_id="c1")
    for client in (alice, bob):
        frame = await client.expect("message")
        assert frame["text"] == "hi bob"
        assert frame["nickname"] == "alice"
        assert frame["room"] == "general"
        assert frame["client_id"] == ("c1")
        assert frame["seq"] == 1
        assert frame["ts"].endswith("Z")
    await bob.say("hi alice")
    assert (await alice.expect("message"))["seq"] == 2
    assert (await bob.expect("message"))["seq"] == 2
    assert await alice.nothing()
    assert await bob.nothing()


async def test_joined_and_left_carry_the_count(joined):
    alice = await joined("alice")
    bob = await joined("bob")
    assert await alice.expect("joined") == {
        "type": "joined",
        "nickname": "bob",
        "participants": 2,
    }
    await bob.close()
    assert await alice.expect("left") == {
        "type": "left",
        "nickname": "bob",
        "participants": 1,
    }


async def test_typing_is_relayed_while_the_database_is_busy(joined):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined")
    async with database_thread_held(), saves_held():
        await alice.send({"type": "typing"})
        assert await bob.expect("typing") == {"type": "typing", "nickname": "alice"}


async def test_messages_are_saved_and_delivered_while_joins_hold_the_database_thread(
    joined,
):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined")
    # A burst of joins and leaves queues on Channels' database thread.
    async with database_thread_held():
        await alice.say("through", client_id="t1")
        assert (await bob.expect("message"))["text"] == "through"
        assert (await alice.expect("message", client_id="t1"))["seq"] >= 1


async def test_a_socket_is_accepted_while_joins_hold_the_database_thread(general):
    client = Client()
    # The server closes a handshake the app leaves unanswered for long.
    async with database_thread_held():
        connected, _code = await client.connect()
        assert connected
    assert (await client.join("alice"))["users"] == ["alice"]
    await client.close()


async def test_typing_reaches_others_not_the_typist(joined):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined")
    await alice.send({"type": "typing"})
    assert await bob.expect("typing") == {"type": "typing", "nickname": "alice"}
    await alice.send({"type": "stop_typing"})
    assert await bob.expect("stop_typing") == {
        "type": "stop_typing",
        "nickname": "alice",
    }
    assert await alice.nothing()


async def test_reconnect_with_last_seq_gets_missed_messages_once(joined, make_client):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.say("one")
    seen = await bob.expect("message", text="one")
    await bob.close()
    for text in ("two", "three"):
        await alice.say(text)
        await alice.expect("message", text=text)
    bob_again = await make_client()
    welcome = await bob_again.join("bob", last_seq=seen["seq"])
    assert [m["text"] for m in welcome["history"]] == ["two", "three"]
    assert welcome["last_seq"] == 3
    await alice.say("four")
    assert (await bob_again.expect("message"))["text"] == "four"
    assert await bob_again.nothing()


async def test_resent_client_id_is_saved_once(joined):
    alice = await joined("alice")
    await alice.say("only once", client_id="same")
    first = await alice.expect("message")
    await alice.say("only once", client_id="same")
    again = await alice.expect("message")
    assert again["id"] == first["id"]
    assert await database_sync_to_async(Message.objects.count)() == 1


async def test_dropped_layer_event_is_recovered_by_pong_and_history(
    joined, client, monkeypatch
):
    from chat import events

    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined")
    real_send = events.room_send
    dropped = []

    async def drop_messages(room_id, *frames, **kwargs):
        if frames[0]["type"] == "message" and not dropped:
            dropped.extend(frames)
            return True  # the layer "accepted" it and lost it
        return await real_send(room_id, *frames, **kwargs)

    monkeypatch.setattr(events, "room_send", drop_messages)
    await alice.say("lost in transit")
    await alice.say("arrives")
    frame = await bob.expect("message")
    assert frame["seq"] == 2  # bob sees the gap: seq 1 never came
    await bob.send({"type": "ping"})
    assert (await bob.expect("pong"))["last_seq"] == 2
    page = await database_sync_to_async(client.get)(
        "/rooms/general/messages", {"after": 0}
    )
    assert [m["text"] for m in page.json()["messages"]] == [
        "lost in transit",
        "arrives",
    ]
    assert page.json()["through"] == 2


async def test_nickname_taken_case_insensitively_by_another_visitor(
    joined, make_client
):
    await joined("Alice")
    other = await make_client()
    await other.send({"type": "join", "nickname": "alice", "last_seq": None})
    error = await other.expect("error")
    assert error["code"] == "nickname_taken"
    # The socket stays open: another nickname works.
    welcome = await other.join("alice2")
    assert welcome["participants"] == 2


async def test_same_visitor_keeps_nickname_and_counts_once(make_client, session_key):
    tab1 = await make_client(session_key=session_key)
    await tab1.join("carol")
    tab2 = await make_client(session_key=session_key)
    welcome = await tab2.join("carol")
    assert welcome["participants"] == 1
    assert welcome["users"] == ["carol"]
    await tab1.close()
    # One tab is still open: carol has not left.
    observer = await make_client()
    assert (await observer.join("dave"))["participants"] == 2


async def test_registered_name_needs_that_user(make_client):
    await database_sync_to_async(get_user_model().objects.create_user)(
        username="Moderator", password="x-secret-123"
    )
    client = await make_client()
    await client.send({"type": "join", "nickname": "moderator", "last_seq": None})
    assert (await client.expect("error"))["code"] == "nickname_taken"


@pytest.mark.parametrize(
    "nickname",
    ["", "   ", "x" * 33, "bad\x00name", "tab\tname", 42, None],
)
async def test_invalid_nickname(make_client, nickname):
    client = await make_client()
    await client.send({"type": "join", "nickname": nickname, "last_seq": None})
    assert (await client.expect("error"))["code"] == "invalid_nickname"


async def test_nickname_is_trimmed(make_client):
    client = await make_client()
    assert (await client.join("  erin  "))["nickname"] == "erin"


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("not json", "invalid_frame"),
        ("[1, 2]", "invalid_frame"),
        ('{"no": "type"}', "invalid_frame"),
        ('{"type": "dance"}', "unknown_type"),
        ('{"type": "message", "text": "early"}', "not_joined"),
        ('{"type": "join", "nickname": "x", "last_seq": "7"}', "invalid_frame"),
        ('{"type": "join", "nickname": "x", "last_seq": true}', "invalid_frame"),
    ],
)
async def test_bad_frames_get_an_error_and_the_socket_stays_open(
    make_client, raw, code
):
    client = await make_client()
    await client.send_raw(text=raw)
    assert (await client.expect("error"))["code"] == code
    assert (await client.join("still-here"))["type"] == "welcome"


async def test_binary_frame_is_refused(make_client):
    client = await make_client()
    await client.send_raw(data=b"\x00\x01")
    assert (await client.expect("error"))["code"] == "invalid_frame"


async def test_frame_over_64_kib_is_refused_and_others_unharmed(joined):
    alice = await joined("alice")
    bob = await joined("bob")
    await bob.send_raw(text='{"type":"message","text":"' + "x" * 70000 + '"}')
    assert (await bob.expect("error"))["code"] == "frame_too_large"
    await alice.say("still fine")
    assert (await bob.expect("message"))["text"] == "still fine"


async def test_empty_and_too_long_messages(joined, settings):
    alice = await joined("alice")
    await alice.say("   \n ")
    assert (await alice.expect("error"))["code"] == "empty_message"
    await alice.say("x" * 2001)
    assert (await alice.expect("error"))["code"] == "message_too_long"
    await alice.say("x" * 2000)
    assert len((await alice.expect("message"))["text"]) == 2000


async def test_rate_limit_drops_excess_messages(joined):
    alice = await joined("alice")
    for i in range(12):
        await alice.say(f"m{i}")
    frames = []
    while len(frames) < 12:
        frames.append(await alice.receive())
    errors = [f for f in frames if f["type"] == "error"]
    sent = [f for f in frames if f["type"] == "message"]
    assert len(sent) == 10
    assert {e["code"] for e in errors} == {"rate_limited"}
    assert await database_sync_to_async(Message.objects.count)() == 10


async def test_markup_is_stored_and_echoed_as_typed(joined):
    alice = await joined("<b>al</b>&amp;")
    payload = "<script>alert(1)</script> <b>bold</b> & &amp;"
    await alice.say(payload)
    frame = await alice.expect("message")
    assert frame["text"] == payload
    assert frame["nickname"] == "<b>al</b>&amp;"
    saved = await database_sync_to_async(Message.objects.get)()
    assert saved.text == payload


async def test_foreign_origin_is_refused_before_accept(transactional_db):
    client = Client(origin=(b"origin", b"http://evil.example"))
    connected, _code = await client.connect()
    assert not connected


async def test_missing_origin_is_refused(transactional_db):
    client = Client(origin=None)
    connected, _code = await client.connect()
    assert not connected


async def test_unknown_room_gets_error_and_close(make_client):
    client = await make_client("/ws/rooms/nowhere/")
    assert (await client.expect("error"))["code"] == "room_not_found"
    assert (await client.ws.receive_output(timeout=2))["code"] == 4404


async def test_path_outside_the_routes_gets_room_not_found(make_client):
    client = await make_client("/ws/rooms/%C3%BCber/")
    assert (await client.expect("error"))["code"] == "room_not_found"


async def test_archived_room_refuses_join(make_client):
    await database_sync_to_async(Room.objects.create)(
        name="Old", slug="old", archived=True
    )
    client = await make_client("/ws/rooms/old/")
    assert (await client.expect("error"))["code"] == "room_archived"
    assert (await client.ws.receive_output(timeout=2))["code"] == 4410


async def test_archiving_tells_clients_and_closes(joined, general):
    alice = await joined("alice")

    def archive():
        general.archived = True
        moderation.room_save(room=general, changed=["archived"])

    await database_sync_to_async(archive)()
    assert (await alice.expect("error"))["code"] == "room_archived"
    assert (await alice.ws.receive_output(timeout=2))["code"] == 4410


async def test_deleting_a_message_removes_it_live(joined):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.say("oops")
    frame = await bob.expect("message")
    await database_sync_to_async(moderation.messages_delete)(
        messages=Message.objects.filter(pk=frame["id"])
    )
    assert await bob.expect("deleted") == {"type": "deleted", "ids": [frame["id"]]}


async def test_join_twice_is_refused(joined):
    alice = await joined("alice")
    await alice.send({"type": "join", "nickname": "alice", "last_seq": None})
    assert (await alice.expect("error"))["code"] == "already_joined"


async def test_events_do_not_leak_between_rooms(joined, make_client):
    await database_sync_to_async(Room.objects.create)(name="Other", slug="other")
    alice = await joined("alice")
    elsewhere = await make_client("/ws/rooms/other/")
    await elsewhere.join("zed")
    await alice.say("only in general")
    await alice.expect("message")
    assert await elsewhere.nothing(0.3)
    await elsewhere.say("only in other")
    assert (await elsewhere.expect("message"))["seq"] == 1
    assert await alice.nothing(0.3)


async def test_refused_message_names_its_client_id(joined):
    alice = await joined("alice")
    await alice.say("x" * 2001, client_id="too-long")
    error = await alice.expect("error")
    assert (error["code"], error["client_id"]) == ("message_too_long", "too-long")
    for i in range(11):
        await alice.say(f"m{i}", client_id=f"c{i}")
    error = await alice.expect("error", code="rate_limited")
    assert error["client_id"] == "c10"


async def test_database_down_at_connect_gets_unavailable(general, monkeypatch):
    from django.db import OperationalError

    from chat import selectors

    def down(**kwargs):
        raise OperationalError("connection refused")

    monkeypatch.setattr(selectors, "room_get", down)
    client = Client()
    connected, _code = await client.connect()
    assert connected
    assert (await client.expect("error"))["code"] == "unavailable"
    assert (await client.ws.receive_output(timeout=2))["code"] == 1011


async def test_failed_join_leaves_no_presence_and_can_be_retried(
    make_client, monkeypatch
):
    from django.db import OperationalError

    from chat import selectors

    real_history = selectors.room_history
    calls = []

    def flaky_history(**kwargs):
        calls.append(kwargs)
        if len(calls) == 1:
            raise OperationalError("server closed the connection")
        return real_history(**kwargs)

    monkeypatch.setattr(selectors, "room_history", flaky_history)
    client = await make_client()
    await client.send({"type": "join", "nickname": "dora", "last_seq": None})
    assert (await client.expect("error"))["code"] == "unavailable"
    assert await database_sync_to_async(Connection.objects.count)() == 0
    welcome = await client.join("dora")
    assert welcome["users"] == ["dora"]


async def test_signed_in_user_joins_under_their_username(make_client, general):
    from django.test import Client as HttpClient

    def sign_in():
        get_user_model().objects.create_user(username="Mod", password="x-secret-123")
        http = HttpClient()
        assert http.login(username="Mod", password="x-secret-123")
        page = http.get("/rooms/general/")
        assert b'"nickname": "Mod"' in page.content
        return http.cookies["sessionid"].value

    session = await database_sync_to_async(sign_in)()
    client = await make_client(session_key=session)
    assert (await client.join("mod"))["nickname"] == "mod"


async def test_a_ping_flood_is_answered_only_within_the_budget(joined):
    alice = await joined("alice")
    for _ in range(30):
        await alice.send({"type": "ping"})
    pongs = 0
    while await alice.nothing(0.3) is False:
        pongs += (await alice.receive())["type"] == "pong"
    assert 10 <= pongs < 30
    # The socket is fine, and messages are not held up by the flood.
    await alice.say("still here")
    assert (await alice.expect("message"))["text"] == "still here"


async def test_messages_relayed_out_of_order_go_out_in_seq_order(joined, general):
    from chat import events
    from chat.hub import get_hub

    alice = await joined("alice")
    hub = get_hub()
    frames = [
        {"type": "message", "id": seq, "seq": seq, "room": "general",
         "nickname": "x", "text": f"m{seq}", "ts": "2026-01-01T00:00:00Z",
         "client_id": None}
        for seq in (3, 1, 2)
    ]  # fmt: skip
    for frame in frames:  # as if three instances' events came in at once
        hub.dispatch({"type": events.EVENT_TYPE, "room": general.pk, "frames": [frame]})
    got = [(await alice.expect("message"))["seq"] for _ in range(3)]
    assert got == [1, 2, 3]


async def test_past_the_pending_bound_events_are_dropped_not_queued(
    joined, general, monkeypatch
):
    from chat import events
    from chat import hub as hub_module

    alice = await joined("alice")
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 3)
    hub = get_hub()
    for seq in range(1, 6):  # all in before the hub's next write round
        frame = {"type": "message", "id": seq, "seq": seq, "room": "general",
                 "nickname": "x", "text": f"m{seq}", "ts": "2026-01-01T00:00:00Z",
                 "client_id": None}  # fmt: skip
        hub.dispatch({"type": events.EVENT_TYPE, "room": general.pk, "frames": [frame]})
    got = [(await alice.expect("message"))["seq"] for _ in range(3)]
    assert got == [1, 2, 3]
    assert await alice.nothing(0.3)


async def test_a_lot_past_the_pending_bound_is_cut_there(joined, general, monkeypatch):
    from chat import events
    from chat import hub as hub_module

    alice = await joined("alice")
    monkeypatch.setattr(hub_module, "MAX_PENDING_EVENTS", 3)
    frames = [
        {"type": "message", "id": seq, "seq": seq, "room": "general",
         "nickname": "x", "text": f"m{seq}", "ts": "2026-01-01T00:00:00Z",
         "client_id": None}
        for seq in range(1, 6)
    ]  # fmt: skip
    get_hub().dispatch(
        {"type": events.EVENT_TYPE, "room": general.pk, "frames": frames}
    )
    got = [(await alice.expect("message"))["seq"] for _ in range(3)]
    assert got == [1, 2, 3]
    assert await alice.nothing(0.3)


async def test_an_event_in_the_one_frame_form_is_still_delivered(joined, general):
    # What instances sent before lots: during a rolling deploy both forms meet.
    from chat import events

    alice = await joined("alice")
    frame = {"type": "message", "id": 1, "seq": 1, "room": "general",
             "nickname": "x", "text": "m1", "ts": "2026-01-01T00:00:00Z",
             "client_id": None}  # fmt: skip
    get_hub().dispatch({"type": events.EVENT_TYPE, "room": general.pk, "frame": frame})
    assert (await alice.expect("message"))["text"] == "m1"


async def test_a_busy_refusal_does_not_spend_the_rate_limit(joined, monkeypatch):
    alice = await joined("alice")
    monkeypatch.setattr(save_queue, "MAX_SAVES_WAITING", 0)
    for i in range(15):
        await alice.say(f"busy {i}", client_id=f"b{i}")
        error = await alice.expect("error")
        assert (error["code"], error["client_id"]) == ("unavailable", f"b{i}")
    monkeypatch.setattr(save_queue, "MAX_SAVES_WAITING", 100)
    for i in range(10):  # the whole burst is still there
        await alice.say(f"now {i}", client_id=f"b{i}")
        assert (await alice.expect("message"))["text"] == f"now {i}"


# Holding under abuse and partial failure ----------------------------------------


def _fill_room(count, text):
    from chat.models import Message, Room

    room = Room.objects.get(slug="general")
    Message.objects.bulk_create(
        Message(room=room, seq=seq, nickname="spammer", text=f"{seq} {text}")
        for seq in range(room.last_seq + 1, room.last_seq + count + 1)
    )
    Room.objects.filter(pk=room.pk).update(last_seq=room.last_seq + count)


async def test_a_room_full_of_long_messages_still_welcomes_within_the_frame_limit(
    make_client, settings
):
    import json

    # 50 messages of 2000 three-byte characters: 300 KB of history.
    await database_sync_to_async(_fill_room)(50, "語" * 1990)
    client = await make_client()
    await client.send({"type": "join", "nickname": "newcomer", "last_seq": None})
    raw = await client.ws.receive_from(timeout=5)
    welcome = json.loads(raw)
    assert welcome["type"] == "welcome"
    assert len(raw.encode()) <= settings.CHAT_MAX_FRAME_BYTES
    # The newest messages, in order, through the room's newest seq.
    seqs = [m["seq"] for m in welcome["history"]]
    assert seqs == list(range(51 - len(seqs), 51))
    assert 0 < len(seqs) < 50
    assert welcome["last_seq"] == 50


async def test_a_catch_up_larger_than_a_frame_says_there_is_more(make_client, settings):
    import json

    await database_sync_to_async(_fill_room)(500, "é" * 1990)
    client = await make_client()
    await client.send({"type": "join", "nickname": "back", "last_seq": 10})
    raw = await client.ws.receive_from(timeout=5)
    welcome = json.loads(raw)
    assert len(raw.encode()) <= settings.CHAT_MAX_FRAME_BYTES
    # The oldest of what was missed, and a cursor at the last one given.
    seqs = [m["seq"] for m in welcome["history"]]
    assert seqs == list(range(11, 11 + len(seqs)))
    assert welcome["last_seq"] == seqs[-1] < 510
    assert welcome["has_more"] is True


async def test_a_join_whose_welcome_fails_leaves_nothing_behind(
    joined, make_client, monkeypatch
):
    from chat.consumers import RoomConsumer

    observer = await joined("observer")
    real_send_frame = RoomConsumer.send_frame
    failures = []

    async def send_frame(self, frame):
        if frame["type"] == "welcome" and not failures:
            failures.append(frame)
            raise OSError("the frame could not be sent")
        await real_send_frame(self, frame)

    monkeypatch.setattr(RoomConsumer, "send_frame", send_frame)
    client = await make_client()
    await client.send({"type": "join", "nickname": "eve", "last_seq": None})
    error = await client.expect("error")
    assert error["code"] == "unavailable"
    # Nobody was told, and the nickname is free: the retry is a fresh join.
    assert await observer.nothing()
    welcome = await client.join("eve")
    assert welcome["users"] == ["eve", "observer"]
    assert (await observer.expect("joined"))["nickname"] == "eve"


async def test_a_frame_refused_as_not_joined_names_its_client_id(make_client):
    client = await make_client()
    await client.say("early", client_id="m-1")
    error = await client.expect("error")
    assert (error["code"], error["client_id"]) == ("not_joined", "m-1")


async def test_the_message_limit_holds_across_a_visitors_sockets(
    make_client, session_key, settings
):
    settings.CHAT_RATE_BURST = 3
    settings.CHAT_RATE_PER_SECOND = 0.1
    first = await make_client(session_key=session_key)
    await first.join("alice")
    for i in range(3):
        await first.say(f"m{i}", client_id=f"a{i}")
        await first.expect("message", client_id=f"a{i}")
    # A second tab, or a reconnect, does not bring a fresh budget.
    await first.close()
    second = await make_client(session_key=session_key)
    await second.join("alice")
    await second.say("one more", client_id="a3")
    error = await second.expect("error")
    assert (error["code"], error["client_id"]) == ("rate_limited", "a3")


async def test_the_address_limit_holds_across_visitors(make_client, settings):
    settings.CHAT_PROXY_HOPS = 1
    settings.CHAT_ADDRESS_RATE_BURST = 4
    settings.CHAT_ADDRESS_RATE_PER_SECOND = 0.1
    office = "198.51.100.7:50000"
    alice = await make_client(forwarded_for=office)
    await alice.join("alice")
    bob = await make_client(forwarded_for=f"203.0.113.9, {office}")
    await bob.join("bob")
    elsewhere = await make_client(forwarded_for="192.0.2.1")
    await elsewhere.join("carol")
    for i in range(2):
        for client, name in ((alice, "alice"), (bob, "bob")):
            await client.say(f"{name} {i}", client_id=f"{name}{i}")
            await client.expect("message", client_id=f"{name}{i}")
    await bob.say("fifth", client_id="bob9")
    error = await bob.expect("error")
    assert (error["code"], error["client_id"]) == ("rate_limited", "bob9")
    # Someone behind another address is not affected.
    await elsewhere.say("fine", client_id="c1")
    assert (await elsewhere.expect("message", client_id="c1"))["text"] == "fine"


async def test_joins_from_one_address_past_its_limit_are_refused_at_once(
    general, make_client, settings
):
    settings.CHAT_PROXY_HOPS = 1
    settings.CHAT_ADDRESS_JOIN_BURST = 3
    settings.CHAT_ADDRESS_JOIN_PER_SECOND = 0.1
    for _ in range(3):
        await make_client(forwarded_for="198.51.100.8")
    client = Client(forwarded_for="198.51.100.8")
    connected, _code = await client.connect()
    assert connected
    error = await client.receive()
    assert error["code"] == "rate_limited"
    closed = await client.ws.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 1013}
    # Another address still gets in.
    other = await make_client(forwarded_for="198.51.100.9")
    assert (await other.join("other"))["type"] == "welcome"


async def test_messages_within_the_limit_are_not_refused_after_a_database_stall(
    joined, settings
):
    settings.CHAT_RATE_BURST = 2
    settings.CHAT_RATE_PER_SECOND = 2
    alice = await joined("alice")
    async with saves_held():
        for i in range(6):  # two a second at most, as the limit allows
            await alice.say(f"m{i}", client_id=f"m{i}")
            await asyncio.sleep(0.55)
    texts = []
    while len(texts) < 6:
        frame = await alice.receive(timeout=10)
        assert frame["type"] == "message", frame
        texts.append(frame["text"])
    assert texts == [f"m{i}" for i in range(6)]


async def test_one_visitors_burst_does_not_fill_the_save_bound_for_others(
    joined, make_client, session_key, monkeypatch
):
    monkeypatch.setattr(save_queue, "MAX_SAVES_WAITING", 3)
    # One visitor's tabs: each has one message in the bound at a time.
    tabs = [await make_client(session_key=session_key) for _ in range(5)]
    for tab in tabs:
        await tab.join("spammer")
    honest = await joined("honest")
    async with saves_held():
        for i, tab in enumerate(tabs):
            await tab.say(f"s{i}", client_id=f"s{i}")
        refused = [await tab.expect("error") for tab in tabs[3:]]
        assert [e["code"] for e in refused] == ["unavailable"] * 2
        await honest.say("mine", client_id="h1")
        assert await honest.nothing(0.3)  # waiting, not refused
    assert (await honest.expect("message", client_id="h1"))["text"] == "mine"


async def test_a_fast_senders_messages_wait_behind_its_own_saves_in_order(joined):
    alice = await joined("alice")
    async with saves_held():
        for i in range(5):
            await alice.say(f"m{i}", client_id=f"m{i}")
        # Read and counted, not refused: they wait for the socket's own saves.
        assert await alice.nothing(0.3)
    texts = [(await alice.expect("message"))["text"] for _ in range(5)]
    assert texts == [f"m{i}" for i in range(5)]


async def test_a_socket_the_server_gives_up_on_mid_frame_still_leaves_its_room(
    joined, make_client
):
    alice = await joined("alice")
    bob = await joined("bob")
    await alice.expect("joined", nickname="bob")
    async with database_thread_held():
        # Bob's ping waits on the database when his socket closes; the server
        # stops waiting for the application (Daphne: application_close_timeout)
        # and cancels it before it has read the disconnect.
        await bob.send({"type": "ping"})
        await bob.ws.send_input({"type": "websocket.disconnect", "code": 1006})
        bob.ws.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await bob.ws.future
    assert await alice.expect("left") == {
        "type": "left",
        "nickname": "bob",
        "participants": 1,
    }
    # His nickname is free, and the room's count is right for the next one.
    carol = await make_client()
    welcome = await carol.join("bob")
    assert welcome["users"] == ["alice", "bob"]
    assert welcome["participants"] == 2
