"""
The chat protocol's one definition: frame types, fields, limits, error and
close codes, and how the HTTP transport carries the same frames (status codes,
event stream). docs/protocol.md documents exactly what is here.
"""

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.utils.translation import gettext as _

from . import nicknames

if TYPE_CHECKING:
    from datetime import datetime

    from .models import Message as SavedMessage
    from .models import Room
    from .selectors import HistoryPage
    from .services.presence import Presence

# A frame as sent: a dict of JSON-native values, encoded by encode().
Frame = dict[str, Any]

NICKNAME_MAX_LENGTH = 32
CLIENT_ID_MAX_LENGTH = 64
# Seqs are stored as 64-bit signed integers; a larger last_seq cannot be a real one.
SEQ_MAX = 2**63 - 1

# Client -> server frame types.
JOIN = "join"
MESSAGE = "message"
TYPING = "typing"
STOP_TYPING = "stop_typing"
PING = "ping"
# Out of the room (the socket stays open, and may join again).
LEAVE = "leave"
# An author's own message: its text changed, or taken back (a moderator may
# delete any message of the room).
EDIT = "edit"
DELETE = "delete"
# A moderator's, about a participant (docs/moderation.md).
MUTE = "mute"
KICK = "kick"
BAN = "ban"
MODERATIONS = (MUTE, KICK, BAN)
CLIENT_TYPES = (
    JOIN,
    MESSAGE,
    TYPING,
    STOP_TYPING,
    PING,
    LEAVE,
    EDIT,
    DELETE,
    *MODERATIONS,
)

# Server -> client frame types (MESSAGE, TYPING and STOP_TYPING too).
WELCOME = "welcome"
JOINED = "joined"
LEFT = "left"
DELETED = "deleted"
EDITED = "edited"
# The answer to a moderator's mute, kick or ban: what was done, to whom.
MODERATED = "moderated"
# The room's details changed (a moderator in the admin).
ROOM = "room"
PONG = "pong"
ERROR = "error"
SERVER_TYPES = (
    WELCOME,
    MESSAGE,
    JOINED,
    LEFT,
    TYPING,
    STOP_TYPING,
    DELETED,
    EDITED,
    MODERATED,
    ROOM,
    PONG,
    ERROR,
)

# Error codes: stable, for programs; each error frame also carries a message
# for people.
INVALID_FRAME = "invalid_frame"
FRAME_TOO_LARGE = "frame_too_large"
UNKNOWN_TYPE = "unknown_type"
NOT_JOINED = "not_joined"
ALREADY_JOINED = "already_joined"
INVALID_NICKNAME = "invalid_nickname"
NICKNAME_TAKEN = "nickname_taken"
EMPTY_MESSAGE = "empty_message"
MESSAGE_TOO_LONG = "message_too_long"
RATE_LIMITED = "rate_limited"
ROOM_NOT_FOUND = "room_not_found"
ROOM_ARCHIVED = "room_archived"
UNAVAILABLE = "unavailable"
# The server process holds as many sockets as it may (CHAT_MAX_CONNECTIONS).
SERVER_FULL = "server_full"
# An HTTP request without the visitor's cookies or CSRF token, or with a
# ticket that is not the visitor's.
FORBIDDEN = "forbidden"
# Moderation (docs/moderation.md). A muted participant still reads; their
# messages, edits and deletions are refused. Each of these errors says how
# long it holds in `retry_after` (seconds; absent for good).
MUTED = "muted"
BANNED = "banned"
KICKED = "kicked"
SLOW_MODE = "slow_mode"
MEMBERS_ONLY = "members_only"
# An edit of a message older than CHAT_EDIT_WINDOW_SECONDS.
EDIT_WINDOW_CLOSED = "edit_window_closed"
# A message to edit or delete, or a participant to moderate, that the room has not.
NOT_FOUND = "not_found"
ERROR_CODES = (
    INVALID_FRAME,
    FRAME_TOO_LARGE,
    UNKNOWN_TYPE,
    NOT_JOINED,
    ALREADY_JOINED,
    INVALID_NICKNAME,
    NICKNAME_TAKEN,
    EMPTY_MESSAGE,
    MESSAGE_TOO_LONG,
    RATE_LIMITED,
    ROOM_NOT_FOUND,
    ROOM_ARCHIVED,
    UNAVAILABLE,
    SERVER_FULL,
    FORBIDDEN,
    MUTED,
    BANNED,
    KICKED,
    SLOW_MODE,
    MEMBERS_ONLY,
    EDIT_WINDOW_CLOSED,
    NOT_FOUND,
)
# The HTTP transport answers an error frame with the status that fits its code.
HTTP_STATUS = {
    INVALID_FRAME: 400,
    FRAME_TOO_LARGE: 413,
    UNKNOWN_TYPE: 400,
    NOT_JOINED: 409,
    ALREADY_JOINED: 409,
    INVALID_NICKNAME: 422,
    NICKNAME_TAKEN: 409,
    EMPTY_MESSAGE: 422,
    MESSAGE_TOO_LONG: 422,
    RATE_LIMITED: 429,
    ROOM_NOT_FOUND: 404,
    ROOM_ARCHIVED: 410,
    UNAVAILABLE: 503,
    SERVER_FULL: 503,
    FORBIDDEN: 403,
    MUTED: 403,
    BANNED: 403,
    KICKED: 403,
    SLOW_MODE: 429,
    MEMBERS_ONLY: 403,
    EDIT_WINDOW_CLOSED: 409,
    NOT_FOUND: 404,
}
# After these statuses the HTTP answer says when to try again (Retry-After).
RETRY_AFTER_SECONDS = 2
RETRY_AFTER_STATUSES = (429, 503)


def http_refusal(
    code: str, retry_after: int | None = None
) -> tuple[int, dict[str, str]]:
    """The HTTP status of an error code, and the headers that go with it
    (`retry_after`: the refusal's own, where it has one)."""
    status = HTTP_STATUS[code]
    if status in RETRY_AFTER_STATUSES:
        return status, {"Retry-After": str(retry_after or RETRY_AFTER_SECONDS)}
    return status, {}


# A message refused with one of these was not saved this time: the client sends
# it again (after a backoff, and after its next welcome).
RETRY_ERRORS = (UNAVAILABLE, RATE_LIMITED, NOT_JOINED)

# Close codes (4000-4999 are the application's). A client does not reconnect
# after these: the reason will not go away by itself.
CLOSE_ROOM_NOT_FOUND = 4404
CLOSE_ROOM_ARCHIVED = 4410
# The client read too slowly and its outgoing buffer overflowed; reconnecting
# with last_seq catches it up.
CLOSE_TOO_SLOW = 4408
# The server could not keep this socket in its room (its instance was taken for
# dead and could not restore it), or it is restarting (chat/draining.py):
# reconnect and join again with last_seq.
CLOSE_REJOIN = 1012
# Refused for now (too many joins from the address or visitor, or a server
# process full, after `server_full`): reconnect after the usual backoff.
CLOSE_TRY_LATER = 1013
# A moderator took the participant out of the room (after `kicked`): they may
# join again, by their own choice, not by reconnecting on their own.
CLOSE_KICKED = 4409
# Banned from the room (after `banned`, also when a banned visitor joins).
CLOSE_BANNED = 4403
FINAL_CLOSE_CODES = (
    CLOSE_ROOM_NOT_FOUND,
    CLOSE_ROOM_ARCHIVED,
    CLOSE_KICKED,
    CLOSE_BANNED,
)
CLOSE_CODES = (
    CLOSE_ROOM_NOT_FOUND,
    CLOSE_ROOM_ARCHIVED,
    CLOSE_KICKED,
    CLOSE_BANNED,
    CLOSE_TOO_SLOW,
    CLOSE_REJOIN,
    CLOSE_TRY_LATER,
)


class ProtocolError(Exception):
    """A frame the server refuses; the socket stays open."""

    def __init__(self, code: str, message: str, client_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # For a refused message: its client_id, so the sender knows which one.
        self.client_id = client_id
        # For a refusal that lifts by itself (muted, slow mode): in how many
        # seconds; None for one that does not, or is not said.
        self.retry_after: int | None = None

    def frame(self) -> Frame:
        """The error frame that tells it."""
        return error_frame(self.code, self.message, self.client_id, self.retry_after)


@dataclass(frozen=True)
class Join:
    nickname: str
    last_seq: int | None
    type: str = JOIN


@dataclass(frozen=True)
class Message:
    text: str
    client_id: str
    type: str = MESSAGE


@dataclass(frozen=True)
class Edit:
    id: int
    text: str
    type: str = EDIT


@dataclass(frozen=True)
class Delete:
    id: int
    type: str = DELETE


@dataclass(frozen=True)
class Target:
    """Whom a moderator acts on: a participant by nickname, or the author of
    a message by its id."""

    nickname: str | None = None
    message_id: int | None = None


@dataclass(frozen=True)
class Moderation:
    """A moderator's mute, kick or ban (`type`)."""

    type: str
    target: Target
    # How long a mute or ban holds; None: a ban for good.
    seconds: int | None
    reason: str
    # A ban: from every room, not this one only; and of the address too.
    everywhere: bool = False
    address: bool = False


@dataclass(frozen=True)
class Signal:
    """A frame with no fields: typing, stop_typing, ping."""

    type: str


def clean_nickname(value: object) -> str:
    """The nickname as kept (chat/nicknames.py: NFKC, trimmed), or ProtocolError."""
    if not isinstance(value, str):
        raise ProtocolError(INVALID_NICKNAME, _("The nickname must be text."))
    nickname = nicknames.normalize(value)
    if not nickname:
        raise ProtocolError(INVALID_NICKNAME, _("Please choose a nickname."))
    if len(nickname) > NICKNAME_MAX_LENGTH:
        raise ProtocolError(
            INVALID_NICKNAME,
            _("A nickname has at most %(max)d characters.")
            % {"max": NICKNAME_MAX_LENGTH},
        )
    refusal = nicknames.refusal(nickname)
    if refusal:
        raise ProtocolError(INVALID_NICKNAME, refusal)
    return nickname


def _is_storable(text: str) -> bool:
    # PostgreSQL text cannot hold NUL, and a lone surrogate (reachable through a
    # JSON escape) cannot be encoded as UTF-8 for the database or other clients.
    return "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text)


def clean_text(value: object) -> str:
    if not isinstance(value, str):
        raise ProtocolError(INVALID_FRAME, _("The message text must be a string."))
    if not _is_storable(value):
        raise ProtocolError(
            INVALID_FRAME,
            _("A message cannot contain NUL or unpaired surrogate characters."),
        )
    if not value.strip():
        raise ProtocolError(EMPTY_MESSAGE, _("An empty message is not sent."))
    limit = settings.CHAT_MAX_MESSAGE_LENGTH
    if len(value) > limit:
        raise ProtocolError(
            MESSAGE_TOO_LONG,
            _("A message has at most %(max)d characters.") % {"max": limit},
        )
    return value


def _clean_client_id(value: object) -> str:
    if value is None:
        return ""
    if (
        not isinstance(value, str)
        or len(value) > CLIENT_ID_MAX_LENGTH
        or not value.isascii()
        or not value.isprintable()
    ):
        raise ProtocolError(
            INVALID_FRAME,
            _("client_id must be null or printable ASCII of at most %(max)d chars.")
            % {"max": CLIENT_ID_MAX_LENGTH},
        )
    return value


def _clean_seq(value: object) -> int | None:
    if value is None:
        return None
    # bool is an int in Python; true/false is not a seq.
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 0 <= value <= SEQ_MAX
    ):
        raise ProtocolError(
            INVALID_FRAME,
            _("last_seq must be null or an integer from 0 to %(max)d.")
            % {"max": SEQ_MAX},
        )
    return value


def _clean_id(value: object) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 0 < value <= SEQ_MAX
    ):
        raise ProtocolError(INVALID_FRAME, _("id must be a message's id."))
    return value


# A mute or ban holds at most this long; a ban may also hold for good.
SANCTION_MAX_SECONDS = 366 * 24 * 3600
REASON_MAX_LENGTH = 500


def _clean_moderation(kind: str, data: dict[str, Any]) -> Moderation:
    nickname, message_id = data.get("nickname"), data.get("id")
    if message_id is not None:
        target = Target(message_id=_clean_id(message_id))
    elif isinstance(nickname, str):
        target = Target(nickname=clean_nickname(nickname))
    else:
        raise ProtocolError(
            INVALID_FRAME, _("Name the participant by nickname or by a message id.")
        )
    seconds = data.get("seconds")
    if kind == KICK or (kind == BAN and seconds is None):
        seconds = None
    elif (
        not isinstance(seconds, int)
        or isinstance(seconds, bool)
        or not 0 < seconds <= SANCTION_MAX_SECONDS
    ):
        raise ProtocolError(
            INVALID_FRAME,
            _("seconds must be a whole number from 1 to %(max)d.")
            % {"max": SANCTION_MAX_SECONDS},
        )
    reason = data.get("reason") or ""
    if not isinstance(reason, str) or not _is_storable(reason):
        raise ProtocolError(INVALID_FRAME, _("The reason must be text."))
    flags = [data.get("everywhere", False), data.get("address", False)]
    if not all(isinstance(flag, bool) for flag in flags):
        raise ProtocolError(
            INVALID_FRAME, _("everywhere and address are true or false.")
        )
    return Moderation(
        type=kind,
        target=target,
        seconds=seconds,
        reason=reason.strip()[:REASON_MAX_LENGTH],
        everywhere=kind == BAN and flags[0],
        address=kind == BAN and flags[1],
    )


ClientFrame = Join | Message | Edit | Delete | Moderation | Signal


def parse_client_frame(text: str | None) -> ClientFrame:
    """Turn one text frame into a frame object, or raise ProtocolError."""
    if text is None:
        raise ProtocolError(INVALID_FRAME, _("Frames are JSON text, not binary."))
    if len(text) * 4 > settings.CHAT_MAX_FRAME_BYTES and (
        len(text.encode("utf-8", "surrogatepass")) > settings.CHAT_MAX_FRAME_BYTES
    ):
        raise ProtocolError(
            FRAME_TOO_LARGE,
            _("A frame has at most %(max)d bytes.")
            % {"max": settings.CHAT_MAX_FRAME_BYTES},
        )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        # RecursionError: arrays or objects nested too deeply for the parser.
        raise ProtocolError(INVALID_FRAME, _("The frame is not valid JSON.")) from None
    if not isinstance(data, dict):
        raise ProtocolError(INVALID_FRAME, _("A frame is a JSON object."))
    kind = data.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(INVALID_FRAME, _("A frame needs a string 'type'."))
    if kind == JOIN:
        return Join(
            nickname=clean_nickname(data.get("nickname")),
            last_seq=_clean_seq(data.get("last_seq")),
        )
    if kind == MESSAGE:
        client_id = _clean_client_id(data.get("client_id"))
        try:
            text = clean_text(data.get("text"))
        except ProtocolError as exc:
            exc.client_id = client_id or None
            raise
        return Message(text=text, client_id=client_id)
    if kind == EDIT:
        return Edit(id=_clean_id(data.get("id")), text=clean_text(data.get("text")))
    if kind == DELETE:
        return Delete(id=_clean_id(data.get("id")))
    if kind in MODERATIONS:
        return _clean_moderation(kind, data)
    if kind in CLIENT_TYPES:
        return Signal(type=kind)
    raise ProtocolError(
        UNKNOWN_TYPE, _("Unknown frame type %(type)r.") % {"type": kind[:40]}
    )


def encode(frame: Frame) -> str:
    """One frame as the JSON text sent on the socket."""
    return json.dumps(frame, ensure_ascii=False, separators=(",", ":"))


def stream_event(frame_text: str, event_id: int | None = None) -> bytes:
    """
    One frame as a Server-Sent Event of the HTTP transport's stream. The id is
    the room's seq (a message's own, a welcome's last_seq), so that a browser
    resuming the stream sends it back as Last-Event-ID. Encoded JSON holds no
    line break, so one data line carries it.
    """
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}data: {frame_text}\n\n".encode()


def error_frame(
    code: str,
    message: str,
    client_id: str | None = None,
    retry_after: int | None = None,
) -> Frame:
    frame: Frame = {"type": ERROR, "code": code, "message": message}
    if client_id:
        frame["client_id"] = client_id
    if retry_after is not None:
        frame["retry_after"] = retry_after
    return frame


def joined_frame(*, nickname: str, participants: int) -> Frame:
    return {"type": JOINED, "nickname": nickname, "participants": participants}


def left_frame(*, nickname: str, participants: int) -> Frame:
    return {"type": LEFT, "nickname": nickname, "participants": participants}


def typing_frame(*, nickname: str, active: bool) -> Frame:
    """A typist's state: `typing` while active, `stop_typing` once not."""
    return {"type": TYPING if active else STOP_TYPING, "nickname": nickname}


def deleted_frame(*, ids: list[int]) -> Frame:
    """Messages deleted (by their author or a moderator), by id."""
    return {"type": DELETED, "ids": ids}


def edited_frame(message: "SavedMessage", room_slug: str) -> Frame:
    """A message its author edited: the message frame again, with its new text."""
    return {**message_frame(message, room_slug), "type": EDITED}


def moderated_frame(
    *, action: str, nickname: str, until: str | None, everywhere: bool = False
) -> Frame:
    """A moderator's mute, kick or ban, done: to them (`until` None: for good,
    or a kick)."""
    return {
        "type": MODERATED,
        "action": action,
        "nickname": nickname,
        "until": until,
        "everywhere": everywhere,
    }


def timestamp(moment: "datetime | None") -> str | None:
    """A time as the frames carry it: ISO 8601 in UTC, with Z."""
    if moment is None:
        return None
    return moment.isoformat().replace("+00:00", "Z")


def author_of(room_id: int, visitor: str) -> str:
    """
    A message's author as the room's pages see it: the same for every message
    of one visitor in the room, and nothing else can be learnt from it (another
    room gives another). A page tells its own messages by the `author` its
    welcome names.
    """
    digest = hashlib.sha256(f"author:{room_id}:{visitor}".encode()).hexdigest()
    return digest[:16]


def pong_frame(*, last_seq: int | None) -> Frame:
    """The answer to a ping: the room's newest seq (0 for a room without any)."""
    return {"type": PONG, "last_seq": last_seq or 0}


def _encoded_size(value: Any) -> int:
    return len(encode(value).encode())


def _fit(items: list[Any], budget: int, *, newest_first: bool = False) -> list[Any]:
    """The items, in order, that fit in `budget` bytes as JSON array members."""
    # Mostly all of them fit: one encoding of the list, not one per item. Per
    # item, a welcome to a room of 1000 encoded 1000 names, 14 % of the
    # servers' CPU when 1000 clients joined at once (bench/joins.py).
    if _encoded_size(items) - 1 <= budget:  # the members, each with a comma
        return list(items)
    kept = []
    for item in reversed(items) if newest_first else items:
        size = _encoded_size(item) + 1  # and its comma
        if size > budget:
            break
        budget -= size
        kept.append(item)
    return kept[::-1] if newest_first else kept


def room_details(room: "Room") -> Frame:
    """What a room's page shows of it, and the rules its posting keeps."""
    return {
        "slug": room.slug,
        "name": room.name,
        "topic": room.topic,
        "slow_mode_seconds": room.slow_mode_seconds,
        "members_only": room.members_only,
    }


def room_frame(room: "Room") -> Frame:
    """A room's details changed in the admin (name, topic, rules)."""
    return {"type": ROOM, "room": room_details(room)}


def welcome_frame(
    *,
    room: "Room",
    presence: "Presence",
    page: "HistoryPage",
    after: int | None,
    max_bytes: int,
) -> Frame:
    """
    The answer to a join, never longer than `max_bytes` encoded: the server's
    outgoing frame limit, which users' messages could otherwise push a welcome
    past (every join refused, the room locked).

    When the history does not fit, a first join (`after` None) keeps the newest
    messages (older ones are a "load older" away) and a catch-up the oldest it
    missed, with `last_seq` at the last one given and `has_more` set: the rest
    is fetched over HTTP. A room too full for its online list to fit gives the
    first names and `users_complete` false (`participants` still counts all).
    """
    frame: Frame = {
        "type": WELCOME,
        "nickname": presence.nickname,
        "room": room_details(room),
        # Who the joiner is to the room: the author id of their own messages,
        # and whether they may moderate it.
        "you": {
            "author": author_of(room.pk, presence.visitor),
            "moderator": presence.moderator,
        },
        "participants": presence.participants,
        "users": [],
        "users_complete": True,
        "history": [],
        "last_seq": page.through,
        "has_more": page.has_more if after is not None else False,
        "limits": {
            "max_message_length": settings.CHAT_MAX_MESSAGE_LENGTH,
            "max_frame_bytes": settings.CHAT_MAX_FRAME_BYTES,
            "edit_seconds": settings.CHAT_EDIT_WINDOW_SECONDS,
        },
    }
    budget = max_bytes - len(encode(frame).encode())
    # The online list may take half of what is left; the history the rest.
    frame["users"] = _fit(presence.users, budget // 2)
    frame["users_complete"] = len(frame["users"]) == len(presence.users)
    budget = max_bytes - len(encode(frame).encode())
    history = [message_frame(m, room.slug) for m in page.messages]
    frame["history"] = _fit(history, budget, newest_first=after is None)
    if after is not None and len(frame["history"]) < len(history):
        frame["last_seq"] = frame["history"][-1]["seq"] if frame["history"] else after
        frame["has_more"] = True
    return frame


def message_frame(message: "SavedMessage", room_slug: str) -> Frame:
    """A saved message as a frame; only JSON-native values (the layer uses msgpack)."""
    frame = {
        "type": MESSAGE,
        "id": message.pk,
        "seq": message.seq,
        "room": room_slug,
        "nickname": message.nickname,
        "text": message.text,
        "ts": timestamp(message.created),
        "client_id": message.client_id or None,
        "author": author_of(message.room_id, message.visitor),
        "edited": timestamp(message.edited),
    }
    if message.deleted is not None:
        # In its place, with nothing of what it said.
        frame.update(text="", edited=None, deleted=True)
    return frame


def client_config(*, room_slug: str, history_page_max: int) -> dict:
    """
    What the room page needs of this protocol, handed to it as JSON by the view
    (templates/chat/room.html), so that static/chat/ restates none of it: the
    frame types, the error and close codes and what the page does after each,
    the limits, and the room's addresses. Types and codes are keyed by their
    names here (without CLOSE_); `history_page_max` is the HTTP history's
    largest page (chat/views.py).
    """
    from django.urls import reverse

    return {
        "frames": {kind.upper(): kind for kind in (*CLIENT_TYPES, *SERVER_TYPES)},
        "errors": {
            "codes": {code.upper(): code for code in ERROR_CODES},
            "retry": list(RETRY_ERRORS),
            # A join refused for its nickname: the person chooses another.
            "nickname": [INVALID_NICKNAME, NICKNAME_TAKEN],
            # Said just before a final close.
            "final": [ROOM_NOT_FOUND, ROOM_ARCHIVED, KICKED, BANNED],
            # A message refused for a while (retry_after): it is not resent by
            # itself, its sender is told how long.
            "held": [MUTED, SLOW_MODE],
        },
        "close": {
            "codes": {
                "ROOM_NOT_FOUND": CLOSE_ROOM_NOT_FOUND,
                "ROOM_ARCHIVED": CLOSE_ROOM_ARCHIVED,
                "TOO_SLOW": CLOSE_TOO_SLOW,
                "REJOIN": CLOSE_REJOIN,
                "TRY_LATER": CLOSE_TRY_LATER,
                "KICKED": CLOSE_KICKED,
                "BANNED": CLOSE_BANNED,
            },
            # No reconnecting after these.
            "final": list(FINAL_CLOSE_CODES),
            # Reconnect after the usual backoff and join with last_seq, as after
            # any close not named here.
            "try_later": [CLOSE_TOO_SLOW, CLOSE_REJOIN, CLOSE_TRY_LATER],
        },
        "limits": {
            "max_message_length": settings.CHAT_MAX_MESSAGE_LENGTH,
            "max_frame_bytes": settings.CHAT_MAX_FRAME_BYTES,
            "nickname_max_length": NICKNAME_MAX_LENGTH,
            "client_id_max_length": CLIENT_ID_MAX_LENGTH,
            # A "load older" page: as many as a first welcome brings.
            "history_page": settings.CHAT_HISTORY_LIMIT,
            "history_page_max": history_page_max,
            "edit_seconds": settings.CHAT_EDIT_WINDOW_SECONDS,
            "reason_max_length": REASON_MAX_LENGTH,
            "sanction_max_seconds": SANCTION_MAX_SECONDS,
        },
        "urls": {
            "history": reverse("chat:history", kwargs={"slug": room_slug}),
            # chat/routing.py; the page puts its own scheme and host before it.
            "socket": f"/ws/rooms/{room_slug}/",
            # The HTTP transport (chat/http_views.py, chat/http_streams.py).
            "http_join": reverse("chat:http_join", kwargs={"slug": room_slug}),
            "http_send": reverse("chat:http_send", kwargs={"slug": room_slug}),
            "http_events": f"/http/rooms/{room_slug}/events",
            "http_poll": f"/http/rooms/{room_slug}/poll",
        },
        "fallback": {
            # A stream that brings no welcome this soon is taken for buffered
            # by a proxy: the page long-polls instead.
            "stream_timeout_ms": 5000,
            # While on HTTP, a WebSocket is tried again this often (±50 %).
            "websocket_retry_ms": round(settings.CHAT_WEBSOCKET_RETRY_SECONDS * 1000),
        },
    }
