"""
Arbitrary frames thrown at a room socket through the whole ASGI application.

Property: every frame is answered as the protocol says (an error with a known
code, or the frames its type calls for, each matching the server frame schema),
nothing is logged as a failure, the socket stays open, and afterwards the same
socket can still join and send.
"""

import contextlib
import json
import logging
import uuid
from collections import Counter
from datetime import datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chat import protocol
from chat.protocol import ProtocolError, parse_client_frame

pytestmark = pytest.mark.django_db(transaction=True)

# Server frames: type -> exactly these fields (besides optional ones), each of
# these types.
SCHEMA = {
    protocol.WELCOME: {
        "nickname": str,
        "room": dict,
        "participants": int,
        "users": list,
        "users_complete": bool,
        "history": list,
        "last_seq": int,
        "has_more": bool,
        "limits": dict,
        "you": dict,
    },
    protocol.MESSAGE: {
        "id": int,
        "seq": int,
        "room": str,
        "nickname": str,
        "text": str,
        "ts": str,
        "client_id": (str, type(None)),
        "author": str,
        "edited": (str, type(None)),
    },
    protocol.MODERATED: {
        "action": str,
        "nickname": str,
        "until": (str, type(None)),
        "everywhere": bool,
    },
    protocol.ROOM: {"room": dict},
    protocol.JOINED: {"nickname": str, "participants": int},
    protocol.LEFT: {"nickname": str, "participants": int},
    protocol.TYPING: {"nickname": str},
    protocol.STOP_TYPING: {"nickname": str},
    protocol.DELETED: {"ids": list},
    protocol.PONG: {"last_seq": int},
    protocol.ERROR: {"code": str, "message": str},
}
# An edit is the message again, with when it was edited.
SCHEMA[protocol.EDITED] = {**SCHEMA[protocol.MESSAGE], "edited": str}
# Present only sometimes: the client_id of a refused message, how long a
# refusal holds, a deleted message's mark.
OPTIONAL = {
    protocol.ERROR: {"client_id": str, "retry_after": int},
    protocol.MESSAGE: {"deleted": bool},
}


# A room's details, in a welcome and a room frame.
ROOM = {
    "slug": str,
    "name": str,
    "topic": str,
    "slow_mode_seconds": int,
    "members_only": bool,
}


def _fields_match(frame, fields, optional=()):
    assert set(fields) <= set(frame) - {"type"} <= set(fields) | set(optional), frame
    for name, kinds in {**fields, **dict(optional)}.items():
        if name not in frame:
            continue
        value = frame[name]
        # JSON true/false is not a number.
        assert isinstance(value, kinds), frame
        assert kinds is bool or not isinstance(value, bool), frame


def check_server_frame(frame):
    """Fail unless `frame` is one of the protocol's server frames, well formed."""
    assert isinstance(frame, dict), frame
    kind = frame.get("type")
    assert kind in SCHEMA, frame
    _fields_match(frame, SCHEMA[kind], OPTIONAL.get(kind, {}))
    if kind == protocol.ERROR:
        assert frame["code"] in protocol.ERROR_CODES, frame
        assert frame["message"], frame
    elif kind == protocol.MESSAGE:
        assert frame["seq"] >= 1 and frame["id"] >= 1, frame
        assert frame["ts"].endswith("Z"), frame
        datetime.fromisoformat(frame["ts"])
    elif kind == protocol.WELCOME:
        _fields_match({"type": 0, **frame["room"]}, ROOM)
        _fields_match({"type": 0, **frame["you"]}, {"author": str, "moderator": bool})
        limits = {
            "max_message_length": int,
            "max_frame_bytes": int,
            "edit_seconds": int,
        }
        _fields_match({"type": 0, **frame["limits"]}, limits)
    elif kind == protocol.ROOM:
        _fields_match({"type": 0, **frame["room"]}, ROOM)
        assert all(isinstance(name, str) for name in frame["users"]), frame
        assert frame["participants"] == len(frame["users"]) >= 1, frame
        for message in frame["history"]:
            check_server_frame(message)
            assert message["type"] == protocol.MESSAGE
            assert message["seq"] <= frame["last_seq"]
    elif kind == protocol.DELETED:
        assert all(isinstance(i, int) for i in frame["ids"]), frame
    else:
        assert frame.get("participants", 0) >= 0 and frame.get("last_seq", 0) >= 0


def test_schema_covers_every_server_frame_type():
    assert set(SCHEMA) == set(protocol.SERVER_TYPES)


# Strategies -----------------------------------------------------------------------


def weighted(*choices):
    """One of the strategies, each (weight, strategy) picked weight times as often."""
    table = [strategy for weight, strategy in choices for _ in range(weight)]
    return st.sampled_from(table).flatmap(lambda strategy: strategy)


# Characters that have broken servers: NUL, lone surrogates (as JSON escapes),
# controls, invisible and right-to-left marks, astral characters.
tricky_chars = st.sampled_from("\x00\ud800\udfff\x07\n\u202e\u200b\ufeff😀é")
any_char = st.characters(exclude_categories=()) | tricky_chars


def any_text(min_size=0, max_size=40):
    # Not st.text(): it leaves surrogates out whatever the alphabet says.
    return st.lists(any_char, min_size=min_size, max_size=max_size).map("".join)


strings = any_text()
huge_ints = st.sampled_from(
    [-1, 0, 1, protocol.SEQ_MAX, protocol.SEQ_MAX + 1, 2**64, -(2**63), 10**40]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | huge_ints
    | st.floats(allow_nan=True, allow_infinity=True)
    | strings
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(strings, inner, max_size=4)
    ),
    max_leaves=12,
)

# Field values that are often right, so that frames get past the first checks.
plain_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("C",)), min_size=1
)
plausible = {
    "nickname": weighted(
        (3, plain_text.map(lambda t: t[:34])),
        (2, strings),
        (1, st.sampled_from(["alice", " bob ", "n" * 32, "n" * 33, "😀" * 32])),
    ),
    "last_seq": weighted(
        (1, st.none()),
        (3, st.integers(min_value=0, max_value=1000)),
        (2, st.integers(min_value=-2, max_value=2**64) | huge_ints),
    ),
    "text": weighted(
        (3, plain_text),
        (3, any_text(min_size=1)),
        (1, st.sampled_from(["", " \n", "x" * 2000, "x" * 2001])),
    ),
    "client_id": st.none()
    | st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=66)
    | st.sampled_from(["same", "c" * 64, "c" * 65, "é"]),
}
# A leave ends the membership that the model's echo count follows; it has tests of
# its own (test_consumers.py).
STORM_TYPES = [kind for kind in protocol.CLIENT_TYPES if kind != protocol.LEAVE]

FIELDS = {
    protocol.JOIN: ("nickname", "last_seq"),
    protocol.MESSAGE: ("text", "client_id"),
}


def field_value(name):
    return weighted((3, plausible[name]), (1, json_values))


@st.composite
def known_type_objects(draw):
    """A frame of a real (or nearly real) type with right, wrong or extra fields."""
    kind = draw(weighted((4, st.sampled_from(STORM_TYPES)), (1, strings)))
    obj = {"type": kind}
    for name in FIELDS.get(kind, ()):
        if draw(st.integers(0, 9)):  # a field is usually there
            obj[name] = draw(field_value(name))
    extra = st.sampled_from(sorted(plausible)).flatmap(
        lambda name: st.tuples(st.just(name), field_value(name))
    ) | st.tuples(strings, json_values)
    obj.update(draw(st.lists(extra, max_size=2)))
    if draw(st.integers(0, 4)) == 0:
        # Nest the frame, or give its type the wrong type.
        obj[draw(st.sampled_from(["type", "nested"]))] = draw(
            st.sampled_from([[obj.copy()], {"type": kind}, None, 1])
        )
    return obj


def as_json(value, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A lone surrogate cannot travel raw in a text frame; as an escape it can.
        text = json.dumps(value)
    return text


oversized = st.builds(
    lambda filler, count: json.dumps(
        {"type": "message", "text": filler * count}, ensure_ascii=False
    ),
    st.sampled_from(["x", "é", "😀"]),
    st.integers(16_000, 70_000),
)
deep = st.builds(lambda n: "[" * n + "]" * n, st.integers(500, 30_000))
raw_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=80)
# Messages with plausible fields: most get saved, so the storm also exercises the
# database and the room's delivery with odd text.
messages = st.builds(
    lambda text, client_id: {"type": "message", "text": text, "client_id": client_id},
    plausible["text"],
    plausible["client_id"],
)
text_frames = weighted(
    (4, st.builds(as_json, messages, st.booleans())),
    (4, st.builds(as_json, known_type_objects(), st.booleans())),
    (2, st.builds(as_json, json_values, st.booleans())),
    (2, raw_text),
    (1, oversized),
    (1, deep),
)
frames = weighted(
    (10, text_frames.map(lambda text: ("text", text))),
    (1, st.binary(max_size=64).map(lambda data: ("bytes", data))),
)
# Most storms start with a join (its last_seq still arbitrary), so that what
# follows also gets past the not_joined check.
joins = plausible["last_seq"].map(
    lambda last_seq: [
        ("text", json.dumps({"type": "join", "nickname": "fuzz", "last_seq": last_seq}))
    ]
)
storms = st.builds(
    lambda prelude, rest: prelude + rest,
    weighted((1, st.just([])), (3, joins)),
    st.lists(frames, min_size=1, max_size=10),
)


# The model of what the server must answer --------------------------------------


class Model:
    """What one connection has asked for so far, and what it must be told."""

    def __init__(self):
        self.nickname = None
        self.client_ids = {}
        self.echoes = Counter()  # (text, client_id) of messages to come back

    def expect(self, kind, payload):
        """The direct answers (as (type, detail)) one frame must get."""
        try:
            frame = parse_client_frame(payload if kind == "text" else None)
        except ProtocolError as exc:
            return [(protocol.ERROR, (exc.code, exc.client_id))]
        if self.nickname is None and frame.type != protocol.JOIN:
            client_id = getattr(frame, "client_id", None) or None
            return [(protocol.ERROR, (protocol.NOT_JOINED, client_id))]
        if frame.type == protocol.JOIN:
            if self.nickname is not None:
                return [(protocol.ERROR, (protocol.ALREADY_JOINED, None))]
            self.nickname = frame.nickname
            return [(protocol.WELCOME, frame.nickname)]
        if frame.type == protocol.MESSAGE:
            # The sender's copy comes back through the room, maybe after later
            # answers; a resent client_id gets the first message again.
            text = frame.text
            if frame.client_id:
                text = self.client_ids.setdefault(frame.client_id, frame.text)
            self.echoes[(text, frame.client_id or None)] += 1
            return []
        if frame.type == protocol.PING:
            return [(protocol.PONG, None)]
        if frame.type in protocol.MODERATIONS:
            # The fuzz's socket moderates nothing.
            return [(protocol.ERROR, (protocol.FORBIDDEN, None))]
        if frame.type in (protocol.EDIT, protocol.DELETE):
            # Its id may name one of this socket's own messages, another's,
            # or none; what it changes comes through the room.
            return [CHANGE]
        return []  # typing signals go to the others only


def detail(frame):
    if frame["type"] == protocol.ERROR:
        return frame["code"], frame.get("client_id")
    if frame["type"] == protocol.WELCOME:
        return frame["nickname"]
    return None


@contextlib.contextmanager
def failures_logged():
    """Records of failures logged by the chat application meanwhile."""
    records = []
    handler = logging.Handler(level=logging.ERROR)
    handler.emit = records.append
    logger = logging.getLogger("chat")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


ROOM_NEWS = (
    protocol.TYPING,
    protocol.STOP_TYPING,
    protocol.JOINED,
    protocol.LEFT,
    protocol.EDITED,
    protocol.DELETED,
)
# An edit or delete: answered with nothing (done), or one of these refusals.
CHANGE = "edit or delete"
CHANGE_REFUSALS = {
    protocol.NOT_FOUND,
    protocol.FORBIDDEN,
    protocol.RATE_LIMITED,
    protocol.EDIT_WINDOW_CLOSED,
}


def answered_as_expected(answers, expected):
    if expected == [CHANGE]:
        return not answers or (
            len(answers) == 1
            and answers[0][0] == protocol.ERROR
            and answers[0][1][0] in CHANGE_REFUSALS
        )
    return answers == expected


async def answers_until_marker(client, echoes):
    """
    Send an end marker and read up to its answer: the answers before it.

    The marker is a frame of a unique unknown type, refused with unknown_type
    whether or not the socket has joined; message frames are set aside in
    `echoes`, since the room delivers them in its own time, and so are the
    room's news of others (typing, joined, left: coalesced, they may come from
    an earlier example's socket a moment after it closed).
    """
    marker = f"end-{uuid.uuid4().hex[:12]}"
    await client.send({"type": marker})
    answers = []
    while True:
        frame = await client.receive()
        check_server_frame(frame)
        if frame["type"] == protocol.ERROR and marker in frame["message"]:
            assert frame["code"] == protocol.UNKNOWN_TYPE
            return answers
        if frame["type"] == protocol.MESSAGE:
            echoes.append(frame)
        elif frame["type"] not in ROOM_NEWS:
            answers.append((frame["type"], detail(frame)))


async def send(client, kind, payload):
    # As the server hands frames over; this also lets empty frames through.
    await client.ws.send_input({"type": "websocket.receive", kind: payload})


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    # The fixtures give the test its room and client factory; each example opens
    # its own socket, so nothing carries over between examples but saved rows.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(storm=storms)
async def test_arbitrary_frames_get_protocol_answers_and_the_socket_survives(
    make_client, django_settings, storm
):
    client = await make_client()
    model = Model()
    echoes = []
    with failures_logged() as failures:
        try:
            for kind, payload in storm:
                expected = model.expect(kind, payload)
                await send(client, kind, payload)
                answers = await answers_until_marker(client, echoes)
                assert answered_as_expected(answers, expected), (
                    kind,
                    payload[:200],
                    answers,
                    logged(failures),
                )

            # The same socket still works: join if the storm did not, then send.
            if model.nickname is None:
                welcome = await client.join("after-storm")
                check_server_frame(welcome)
                assert welcome["nickname"] == "after-storm"
            final_id = f"final-{uuid.uuid4().hex}"
            await client.say("still here", client_id=final_id)
            last, seen = await client.receive_until("message", client_id=final_id)
            for frame in seen:
                check_server_frame(frame)
            assert last["text"] == "still here"
            seen = [f for f in seen if f is not last and f["type"] not in ROOM_NEWS]
            echoes.extend(seen)
            assert [f["type"] for f in echoes] == [protocol.MESSAGE] * len(echoes)
            # Messages are saved apart from the reading of frames: the copy
            # answering a resend may come after later messages.
            while Counter((f["text"], f["client_id"]) for f in echoes) != model.echoes:
                frame = await client.receive(timeout=2)
                if frame["type"] == protocol.MESSAGE:
                    echoes.append(frame)
        finally:
            # The next example may join with the same nickname.
            await client.close()

    assert Counter((f["text"], f["client_id"]) for f in echoes) == model.echoes
    assert not failures, logged(failures)


def logged(records):
    return [record.getMessage() for record in records]


@pytest.fixture
def django_settings(settings):
    # Enough burst that a storm's messages are never rate limited, so that the
    # model knows every answer; the limit itself is tested in test_consumers.py.
    settings.CHAT_RATE_BURST = 1000
    return settings
