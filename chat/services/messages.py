"""
Messages: each takes its room's next seq as it is saved, in the transaction
that saves it, so seqs have no gaps and commit in order. A message is saved
before the room hears of it (amessage_post).
"""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from .. import protocol
from ..models import Message, Room
from ..protocol import ProtocolError
from . import sanctions, save_queue
from .save_queue import Answer, Draft, SaveResult


def _take_seqs(room_id: int, count: int) -> int | None:
    """
    Take the room's next `count` seqs: the last of them, or None when the room is
    archived (or gone).

    The row lock this update takes orders concurrent senders, so seqs are handed
    out without gaps and commit in order.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Room._meta.db_table} SET last_seq = last_seq + %s "  # noqa: S608 - the table name is the model's
            "WHERE id = %s AND NOT archived RETURNING last_seq",
            [count, room_id],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _insert_with_seqs(
    room_id: int, messages: list[Message]
) -> list[tuple[int, int]] | None:
    """
    PostgreSQL: take the seqs and insert the messages in one statement.

    Its row lock is then held for one statement and the commit, not for a round
    trip back to Python between two: under overload, senders queued behind a
    holder waiting for its thread (save delays grew past 40 s,
    tests/system/test_faults.py).
    """
    room, table = Room._meta.db_table, Message._meta.db_table
    columns = ("nickname", "text", "created", "client_id", "visitor", "user_id")
    with connection.cursor() as cursor:
        cursor.execute(
            f"WITH room AS (UPDATE {room} SET last_seq = last_seq + %s "  # noqa: S608 - the table names are the models'
            "WHERE id = %s AND NOT archived RETURNING last_seq) "
            f"INSERT INTO {table} "
            "(room_id, seq, nickname, text, created, client_id, visitor, user_id) "
            "SELECT %s, room.last_seq - %s + lot.n, lot.nickname, lot.text, "
            "lot.created, lot.client_id, lot.visitor, lot.user_id FROM room, "
            "unnest(%s::text[], %s::text[], %s::timestamptz[], %s::text[], "
            "%s::text[], %s::bigint[]) WITH ORDINALITY "
            "AS lot(nickname, text, created, client_id, visitor, user_id, n) "
            "RETURNING id, seq",
            [len(messages), room_id, room_id, len(messages)]
            + [[getattr(m, column) for m in messages] for column in columns],
        )
        rows = cursor.fetchall()
    return rows or None


def _insert(room_id: int, messages: list[Message]) -> bool:
    """Give the messages the room's next seqs and insert them; False if archived."""
    # Atomic either way: a duplicate client_id rolls back the seqs taken, also
    # when the caller is inside a transaction of its own.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            rows = _insert_with_seqs(room_id, messages)
            if rows is None:
                return False
            first = min(seq for _pk, seq in rows)
            for pk, seq in rows:
                message = messages[seq - first]
                message.pk, message.seq = pk, seq
                message._state.adding = False
            return True
        last = _take_seqs(room_id, len(messages))
        if last is None:
            return False
        for seq, message in enumerate(messages, start=last - len(messages) + 1):
            message.seq = seq
        Message.objects.bulk_create(messages)
        return True


def _draft(room_id: int, draft: Draft) -> Message:
    return Message(
        room_id=room_id,
        nickname=draft["nickname"],
        text=draft["text"],
        client_id=draft["client_id"],
        visitor=draft["visitor"],
        user_id=draft.get("user_id"),
        created=timezone.now(),
    )


def _archived() -> ProtocolError:
    return ProtocolError(protocol.ROOM_ARCHIVED, _("This room is archived."))


def _save_one(message: Message) -> tuple[Message, bool]:
    try:
        saved = _insert(message.room_id, [message])
    except IntegrityError:
        if not message.client_id:
            raise
        # Saved before: the constraint on (room, visitor, client_id) caught it, and
        # the seq taken with it went back with the rollback.
        before = Message.objects.get(
            room_id=message.room_id,
            visitor=message.visitor,
            client_id=message.client_id,
        )
        return before, False
    if not saved:
        raise _archived()
    return message, True


def messages_save(
    *, room_id: int, drafts: list[Draft], rules: sanctions.Rules | None = None
) -> list[SaveResult]:
    """
    Save what of a room's lot the room's rules and moderators allow now
    (chat/services/sanctions.py: `rules` as the save's trip read them, or
    read here); the rest gets its refusal.
    """
    refusals = sanctions.lot_refusals(room_id=room_id, drafts=drafts, rules=rules)
    allowed = [
        draft for draft, refused in zip(drafts, refusals, strict=True) if not refused
    ]
    saved = iter(_messages_save(room_id=room_id, drafts=allowed) if allowed else [])
    return [refused or next(saved) for refused in refusals]


def _messages_save(*, room_id: int, drafts: list[Draft]) -> list[SaveResult]:
    """
    Save messages of one room together, in order, with consecutive seqs; a
    (message, created) pair or the exception that stopped it for each draft.

    A client_id the same visitor already used in this room gives the message
    saved then, with created False, instead of a second copy: a resend after a
    reconnect is not a new message.

    One commit for the lot (and one statement on PostgreSQL): saving one message
    at a time, the room's row lock allowed about 400 messages/s to two instances
    (bench/run.py, docs/benchmarks.md).
    """
    messages = [_draft(room_id, draft) for draft in drafts]
    try:
        saved = _insert(room_id, messages)
    except IntegrityError:
        # A resend among them: one at a time, so that the others still go in,
        # and each sender learns what became of its own.
        results: list[SaveResult] = []
        for message in messages:
            try:
                results.append(_save_one(message))
            except Exception as exc:  # noqa: BLE001 - handed to its sender
                results.append(exc)
        return results
    if not saved:
        return [_archived() for _message in messages]
    return [(message, True) for message in messages]


async def amessage_post(
    *,
    room: Room,
    nickname: str,
    visitor: str,
    text: str,
    client_id: str,
    user_id: int | None = None,
    moderator: bool = False,
    joined: datetime | None = None,
) -> Answer:
    """
    Save a message, then ring the room's doorbell; (message frame, delivered).

    Saved with the others of the room that wait meanwhile (save_queue), within
    the process's save bound. delivered is False when the room was not told: a
    resend of a message saved before, or a channel layer that could not take
    the event.
    """
    draft: Draft = {
        "nickname": nickname,
        "visitor": visitor,
        "text": text,
        "client_id": client_id,
        "user_id": user_id,
        "moderator": moderator,
        "joined": joined,
    }
    return await save_queue.aqueue_post(
        room=room, draft=draft, save=messages_save, rules=sanctions.rooms_rules
    )


def _is_author(message: Message, visitor: str, user_id: int | None) -> bool:
    """The sender of a message, by their session (or cookie), or their account."""
    return message.visitor == visitor or (
        user_id is not None and message.user_id == user_id
    )


def _message_for_change(room_id: int, message_id: int) -> Message:
    message = (
        Message.objects.select_for_update()
        .filter(pk=message_id, room_id=room_id, deleted__isnull=True)
        .first()
    )
    if message is None:
        raise ProtocolError(
            protocol.NOT_FOUND, _("There is no such message in this room.")
        )
    return message


def _author_check(message: Message, visitor: str, user_id: int | None) -> None:
    if not _is_author(message, visitor, user_id):
        raise ProtocolError(
            protocol.FORBIDDEN, _("Only its author can change this message.")
        )
    # A muted or banned author takes nothing back either.
    refused = sanctions.lot_refusals(
        room_id=message.room_id,
        drafts=[
            {
                "nickname": message.nickname,
                "visitor": visitor,
                "text": "",
                "client_id": "",
                "user_id": user_id,
                "moderator": False,
            }
        ],
        sanctions_only=True,
    )[0]
    if refused is not None:
        raise refused


def message_edit(
    *, room_id: int, message_id: int, visitor: str, user_id: int | None, text: str
) -> Message:
    """Change the text of one's own message, within CHAT_EDIT_WINDOW_SECONDS."""
    with transaction.atomic():
        message = _message_for_change(room_id, message_id)
        _author_check(message, visitor, user_id)
        window = timedelta(seconds=settings.CHAT_EDIT_WINDOW_SECONDS)
        now = timezone.now()
        if message.created + window < now:
            raise ProtocolError(
                protocol.EDIT_WINDOW_CLOSED,
                _("A message can be edited for %(minutes)d minutes after it is sent.")
                % {"minutes": settings.CHAT_EDIT_WINDOW_SECONDS // 60},
            )
        message.text = protocol.clean_text(text)
        message.edited = now
        message.save(update_fields=["text", "edited"])
        return message


def message_remove(message: Message) -> None:
    """Take a message's text away, leaving its place in the room."""
    message.text = ""
    message.deleted = timezone.now()
    message.save(update_fields=["text", "deleted"])


def message_delete(
    *, room_id: int, message_id: int, visitor: str, user_id: int | None
) -> Message:
    """Delete one's own message: a "message deleted" in its place."""
    with transaction.atomic():
        message = _message_for_change(room_id, message_id)
        _author_check(message, visitor, user_id)
        message_remove(message)
        return message
