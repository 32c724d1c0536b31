"""parse_client_frame and its helpers, and the protocol's documentation."""

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from chat import protocol
from chat.protocol import (
    CLIENT_ID_MAX_LENGTH,
    NICKNAME_MAX_LENGTH,
    SEQ_MAX,
    Join,
    Message,
    ProtocolError,
    Signal,
    parse_client_frame,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def frame(**fields):
    return json.dumps(fields)


def refused(text):
    """The error code parse_client_frame answers `text` with."""
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(text)
    assert info.value.message  # every refusal explains itself to a person
    return info.value.code


# Framing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not json",
        '{"type": "ping"',
        "[1, 2]",
        '"ping"',
        "42",
        "null",
        "{}",
        '{"type": null}',
        '{"type": 7}',
        '{"type": ["ping"]}',
        '{"Type": "ping"}',
    ],
)
def test_malformed_frames_are_invalid(text):
    assert refused(text) == protocol.INVALID_FRAME


def test_binary_frame_is_invalid():
    # The consumer hands a binary frame over as text_data=None.
    assert refused(None) == protocol.INVALID_FRAME


def test_deeply_nested_json_is_invalid_not_a_crash():
    depth = 30_000  # 60 KB: within the frame limit
    assert refused("[" * depth + "]" * depth) == protocol.INVALID_FRAME
    nested = '{"type": "ping", "x": ' + "[" * depth + "]" * depth + "}"
    assert refused(nested) == protocol.INVALID_FRAME


def test_integer_with_too_many_digits_is_invalid():
    assert refused('{"type": "ping", "n": ' + "9" * 5000 + "}") == (
        protocol.INVALID_FRAME
    )


@pytest.mark.parametrize("kind", ["dance", "PING", "Join", " ping", "welcome", ""])
def test_unknown_type(kind):
    assert refused(frame(type=kind)) == protocol.UNKNOWN_TYPE


def test_unknown_type_message_is_bounded():
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame(type="x" * 10_000))
    assert len(info.value.message) < 200


@pytest.mark.parametrize("kind", [protocol.TYPING, protocol.STOP_TYPING, "ping"])
def test_signals_ignore_extra_fields(kind):
    assert parse_client_frame(frame(type=kind, extra=[1, {"a": None}])) == Signal(
        type=kind
    )


# Frame size -------------------------------------------------------------------


def _message_of_bytes(size, filler):
    """A message frame of exactly `size` UTF-8 bytes, its text made of `filler`."""
    empty = len(frame(type="message", text="").encode())
    width = len(filler.encode())
    count, rest = divmod(size - empty, width)
    text = json.dumps(
        {"type": "message", "text": filler * count + " " * rest}, ensure_ascii=False
    )
    assert len(text.encode()) == size
    return text


@pytest.mark.parametrize("filler", ["a", "é", "€", "😀"])
def test_frame_size_is_counted_in_utf8_bytes(settings, filler):
    settings.CHAT_MAX_FRAME_BYTES = 1000
    settings.CHAT_MAX_MESSAGE_LENGTH = 10_000
    assert parse_client_frame(_message_of_bytes(1000, filler)).type == "message"
    assert refused(_message_of_bytes(1001, filler)) == protocol.FRAME_TOO_LARGE


def test_multibyte_frame_under_the_byte_limit_in_characters_is_too_large(settings):
    settings.CHAT_MAX_FRAME_BYTES = 1000
    settings.CHAT_MAX_MESSAGE_LENGTH = 10_000
    text = frame(type="message", text="€" * 400)  # ASCII escapes: 2.4 KB
    assert refused(text) == protocol.FRAME_TOO_LARGE
    raw = json.dumps({"type": "message", "text": "€" * 400}, ensure_ascii=False)
    assert len(raw) < 1000 < len(raw.encode())
    assert refused(raw) == protocol.FRAME_TOO_LARGE


def test_size_is_checked_before_parsing(settings):
    settings.CHAT_MAX_FRAME_BYTES = 100
    assert refused("x" * 101) == protocol.FRAME_TOO_LARGE


def test_default_frame_limit_is_64_kib():
    ping = '{"type":"ping"}'
    assert parse_client_frame(" " * (64 * 1024 - len(ping)) + ping).type == "ping"
    assert refused(" " * (64 * 1024 - len(ping) + 1) + ping) == (
        protocol.FRAME_TOO_LARGE
    )


# join -------------------------------------------------------------------------


def test_join_fields():
    assert parse_client_frame(frame(type="join", nickname="alice")) == Join(
        nickname="alice", last_seq=None
    )
    assert parse_client_frame(frame(type="join", nickname="alice", last_seq=7)) == Join(
        nickname="alice", last_seq=7
    )


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("  alice  ", "alice"),
        ("\talice\n", "alice"),
        ("a", "a"),
        ("Zoë 😀", "Zoë 😀"),
        ("n" * NICKNAME_MAX_LENGTH, "n" * NICKNAME_MAX_LENGTH),
        (" " + "n" * NICKNAME_MAX_LENGTH + " ", "n" * NICKNAME_MAX_LENGTH),
        ("😀" * NICKNAME_MAX_LENGTH, "😀" * NICKNAME_MAX_LENGTH),
        ("<b>x</b>", "<b>x</b>"),
    ],
)
def test_nickname_is_trimmed_and_kept(raw, cleaned):
    assert parse_client_frame(frame(type="join", nickname=raw)).nickname == cleaned


@pytest.mark.parametrize(
    "nickname",
    [
        None,
        7,
        ["alice"],
        {"name": "alice"},
        True,
        "",
        "   ",
        "\u3000",  # ideographic space trims away too
        "n" * (NICKNAME_MAX_LENGTH + 1),
        "😀" * (NICKNAME_MAX_LENGTH + 1),
        "al\x00ice",
        "al\nice",
        "al\x7fice",
        "al\u200bice",  # zero-width space (format)
        "\u202eecila",  # right-to-left override (format)
        "al\ue000ice",  # private use
        "al\ud800ice",  # lone surrogate
    ],
)
def test_invalid_nicknames(nickname):
    text = json.dumps({"type": "join", "nickname": nickname})
    assert refused(text) == protocol.INVALID_NICKNAME


def test_missing_nickname():
    assert refused(frame(type="join")) == protocol.INVALID_NICKNAME


@pytest.mark.parametrize("last_seq", [None, 0, 1, 123_456, SEQ_MAX])
def test_last_seq_accepted(last_seq):
    parsed = parse_client_frame(frame(type="join", nickname="a", last_seq=last_seq))
    assert parsed.last_seq == last_seq


@pytest.mark.parametrize(
    "last_seq",
    [-1, SEQ_MAX + 1, 10**30, 1.0, 1.5, "7", True, False, [], {}],
)
def test_last_seq_refused(last_seq):
    text = frame(type="join", nickname="a", last_seq=last_seq)
    assert refused(text) == protocol.INVALID_FRAME


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_last_seq_refused(literal):
    text = '{"type": "join", "nickname": "a", "last_seq": ' + literal + "}"
    assert refused(text) == protocol.INVALID_FRAME


def test_nickname_is_checked_before_last_seq():
    text = frame(type="join", nickname="", last_seq="bad")
    assert refused(text) == protocol.INVALID_NICKNAME


# message ----------------------------------------------------------------------


def test_message_fields():
    assert parse_client_frame(
        frame(type="message", text="hi", client_id="c-1")
    ) == Message(text="hi", client_id="c-1")


def test_message_text_is_kept_as_typed():
    text = "  two\nlines\t<b>&amp;</b>  "
    assert parse_client_frame(frame(type="message", text=text)).text == text


@pytest.mark.parametrize("text", [None, 5, ["hi"], {"t": "hi"}, True])
def test_message_text_must_be_a_string(text):
    assert refused(json.dumps({"type": "message", "text": text})) == (
        protocol.INVALID_FRAME
    )


def test_message_without_text():
    assert refused(frame(type="message")) == protocol.INVALID_FRAME


@pytest.mark.parametrize("text", ["", " ", "\n\t ", "\u3000\u2003"])
def test_blank_message_is_empty(text):
    assert refused(frame(type="message", text=text)) == protocol.EMPTY_MESSAGE


@pytest.mark.parametrize("text", ["a\x00b", "\x00", "a\ud800b", "\udfff"])
def test_text_that_cannot_be_stored_is_invalid(text):
    # NUL cannot be stored by PostgreSQL; a lone surrogate is not encodable text.
    assert refused(frame(type="message", text=text)) == protocol.INVALID_FRAME


def test_escaped_surrogate_pair_is_one_character():
    parsed = parse_client_frame('{"type": "message", "text": "\\ud83d\\ude00"}')
    assert parsed.text == "😀"


def test_message_length_at_and_over_the_default_limit():
    assert len(parse_client_frame(frame(type="message", text="x" * 2000)).text) == 2000
    assert refused(frame(type="message", text="x" * 2001)) == protocol.MESSAGE_TOO_LONG


def test_message_length_counts_characters_not_bytes(settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 10
    assert parse_client_frame(frame(type="message", text="😀" * 10)).text == "😀" * 10
    assert refused(frame(type="message", text="😀" * 11)) == protocol.MESSAGE_TOO_LONG


def test_message_limit_follows_the_setting(settings):
    settings.CHAT_MAX_MESSAGE_LENGTH = 5
    assert parse_client_frame(frame(type="message", text="12345")).text == "12345"
    assert refused(frame(type="message", text="123456")) == protocol.MESSAGE_TOO_LONG


@pytest.mark.parametrize(
    "client_id, cleaned",
    [
        (None, ""),
        ("", ""),
        ("a", "a"),
        (
            "550e8400-e29b-41d4-a716-446655440000",
            "550e8400-e29b-41d4-a716-446655440000",
        ),
        ("~!@# $%^&*()", "~!@# $%^&*()"),
        ("c" * CLIENT_ID_MAX_LENGTH, "c" * CLIENT_ID_MAX_LENGTH),
    ],
)
def test_client_id_accepted(client_id, cleaned):
    parsed = parse_client_frame(frame(type="message", text="hi", client_id=client_id))
    assert parsed.client_id == cleaned


def test_client_id_may_be_left_out():
    assert parse_client_frame(frame(type="message", text="hi")).client_id == ""


@pytest.mark.parametrize(
    "client_id",
    [
        "c" * (CLIENT_ID_MAX_LENGTH + 1),
        "é",
        "id😀",
        "tab\there",
        "new\nline",
        "nul\x00",
        "del\x7f",
        7,
        1.5,
        True,
        ["a"],
        {"id": "a"},
    ],
)
def test_client_id_refused(client_id):
    text = frame(type="message", text="hi", client_id=client_id)
    assert refused(text) == protocol.INVALID_FRAME


def test_client_id_is_checked_before_text():
    text = frame(type="message", text="", client_id=["bad"])
    assert refused(text) == protocol.INVALID_FRAME


@pytest.mark.parametrize(
    "text, code",
    [
        ("", protocol.EMPTY_MESSAGE),
        ("x" * 2001, protocol.MESSAGE_TOO_LONG),
        (None, protocol.INVALID_FRAME),
        ("a\x00", protocol.INVALID_FRAME),
    ],
)
def test_a_refused_message_names_its_client_id(text, code):
    # So that the sender knows which of its messages was not sent.
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame(type="message", text=text, client_id="m-7"))
    assert (info.value.code, info.value.client_id) == (code, "m-7")
    with pytest.raises(ProtocolError) as info:
        parse_client_frame(frame(type="message", text=text, client_id=""))
    assert info.value.client_id is None


# Output helpers -----------------------------------------------------------------


def test_encode_is_compact_utf8_json():
    assert protocol.encode({"type": "pong", "last_seq": 3}) == (
        '{"type":"pong","last_seq":3}'
    )
    assert protocol.encode({"text": "é😀"}) == '{"text":"é😀"}'


def test_error_frame():
    assert protocol.error_frame(protocol.RATE_LIMITED, "slow down") == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
    }
    assert protocol.error_frame(protocol.RATE_LIMITED, "slow down", "m-7") == {
        "type": "error",
        "code": "rate_limited",
        "message": "slow down",
        "client_id": "m-7",
    }


# The definitions and the documentation ------------------------------------------


def _string_constants():
    return {
        name: value
        for name, value in vars(protocol).items()
        if name.isupper() and isinstance(value, str)
    }


def _close_codes():
    return {
        name: value
        for name, value in vars(protocol).items()
        if name.startswith("CLOSE_") and isinstance(value, int)
    }


def test_every_string_constant_is_a_frame_type_or_an_error_code():
    # A new constant must be put in one of the lists, and so gets documented below.
    classified = (
        set(protocol.CLIENT_TYPES)
        | set(protocol.SERVER_TYPES)
        | set(protocol.ERROR_CODES)
    )
    assert set(_string_constants().values()) == classified
    assert not set(protocol.ERROR_CODES) & (
        set(protocol.CLIENT_TYPES) | set(protocol.SERVER_TYPES)
    )
    assert set(_close_codes().values()) == set(protocol.CLOSE_CODES)
    # The application's own codes, or the standard ones for "reconnect".
    assert all(
        4000 <= code <= 4999 or code in (1011, 1012, 1013)
        for code in protocol.CLOSE_CODES
    )
    assert set(protocol.FINAL_CLOSE_CODES) <= set(protocol.CLOSE_CODES)


def _section(doc, title):
    """The text of the `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", doc, re.S | re.M)
    assert match, f"docs/protocol.md has no '## {title}' section"
    return match.group(1)


def test_docs_describe_every_client_frame():
    section = _section(DOC.read_text(), "Client to server frames")
    for kind in protocol.CLIENT_TYPES:
        assert f"### `{kind}`" in section, kind


def test_docs_describe_every_server_frame():
    section = _section(DOC.read_text(), "Server to client frames")
    for kind in protocol.SERVER_TYPES:
        assert f"### `{kind}`" in section, kind


def test_docs_list_every_error_code():
    section = _section(DOC.read_text(), "Error codes")
    for code in protocol.ERROR_CODES:
        assert re.search(rf"^\| `{code}` \|", section, re.M), code


def test_docs_list_every_close_code():
    section = _section(DOC.read_text(), "Close codes")
    for name, code in _close_codes().items():
        assert re.search(rf"^\| `{code}` \|", section, re.M), name


def test_docs_state_the_limits_and_their_settings():
    doc = DOC.read_text()
    for setting in (
        "CHAT_MAX_MESSAGE_LENGTH",
        "CHAT_MAX_FRAME_BYTES",
        "CHAT_RATE_BURST",
        "CHAT_RATE_PER_SECOND",
        "CHAT_HISTORY_LIMIT",
        "CHAT_CATCH_UP_LIMIT",
    ):
        assert f"`{setting}`" in doc, setting
    limits = _section(doc, "Limits")
    assert f"{NICKNAME_MAX_LENGTH} characters" in limits
    assert f"{CLIENT_ID_MAX_LENGTH} characters" in limits


def test_a_welcome_keeps_every_name_that_fits_and_only_those():
    room = SimpleNamespace(
        pk=1, slug="r", name="R", topic="", slow_mode_seconds=0, members_only=False
    )
    page = SimpleNamespace(messages=[], through=0, has_more=False)
    users = [f"user{n:03}" for n in range(100)]

    def welcome(max_bytes):
        joined = SimpleNamespace(
            nickname="me", participants=100, users=users, visitor="v", moderator=False
        )
        return protocol.welcome_frame(
            room=room, presence=joined, page=page, after=None, max_bytes=max_bytes
        )

    full = welcome(65536)
    assert (full["users"], full["users_complete"]) == (users, True)
    # The online list may take half of what the frame has left: the names and
    # their commas (the list's encoding less its brackets, plus one).
    empty = {**full, "users": []}
    names = len(protocol.encode(full)) - len(protocol.encode(empty)) + 1
    exact = welcome(len(protocol.encode(empty)) + 2 * names)
    assert (exact["users"], exact["users_complete"]) == (users, True)
    short = welcome(len(protocol.encode(empty)) + 2 * names - 1)
    assert (short["users"], short["users_complete"]) == (users[:-1], False)
