"""Reads. Every function here is synchronous and only queries the database."""

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TypedDict

from django.conf import settings
from django.db.models import Count, Exists, Manager, OuterRef, Q, QuerySet
from django.utils import timezone

from .models import Connection, Member, Message, Room

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations


def live_cutoff() -> datetime:
    """Connections of instances whose heartbeat is older than this are ghosts."""
    return timezone.now() - timedelta(seconds=settings.CHAT_INSTANCE_TIMEOUT_SECONDS)


def live_connections(
    connections: QuerySet[Connection] | Manager[Connection] | None = None,
) -> QuerySet[Connection]:
    """Connections served by an instance that is alive."""
    if connections is None:
        connections = Connection.objects.all()
    return connections.filter(instance__heartbeat__gte=live_cutoff())


def live_members() -> QuerySet[Member]:
    """Members with at least one live connection."""
    return Member.objects.filter(
        Exists(live_connections().filter(member=OuterRef("pk")))
    )


def _live_members(room_id: int) -> QuerySet[Member]:
    return live_members().filter(room_id=room_id)


def room_get(*, slug: str) -> Room | None:
    """The room with that slug, or None."""
    return Room.objects.filter(slug=slug).first()


class LobbyCounts(TypedDict):
    online: int


def rooms_for_lobby() -> "QuerySet[WithAnnotations[Room, LobbyCounts]]":
    """Open rooms with how many people are in each right now."""
    members = live_members().values("pk")
    return (
        Room.objects.filter(archived=False)
        .annotate(online=Count("members", filter=Q(members__in=members)))
        .order_by("name")
    )


def room_participants(*, room_id: int) -> tuple[int, list[str]]:
    """(count, sorted nicknames) of the people in the room now, across instances."""
    names = sorted(
        _live_members(room_id).values_list("nickname", flat=True), key=str.casefold
    )
    return len(names), names


def room_participant_count(*, room_id: int) -> int:
    """How many people are in the room now, across instances."""
    return _live_members(room_id).count()


def visitor_in_room(*, room_id: int, visitor: str, nickname: str) -> bool:
    """Whether the visitor is in the room as `nickname`, by any live connection:
    any of their tabs, over either transport, on any instance."""
    return _live_members(room_id).filter(visitor=visitor, nickname=nickname).exists()


def room_last_seq(*, room_id: int) -> int | None:
    return Room.objects.filter(pk=room_id).values_list("last_seq", flat=True).first()


@dataclass(frozen=True)
class HistoryPage:
    messages: list[Message]
    # The answer is complete through this seq: every message with a seq between
    # the page's start (`after`, or the first message returned) and `through` that
    # still exists is in `messages`. Deleted messages leave holes in the seqs, so
    # it is not the last message's seq: a catching-up reader moves its cursor here.
    through: int
    # For pages going back in time: whether older messages remain.
    has_more: bool


def room_history(
    *, room_id: int, after: int | None = None, before: int | None = None, limit: int
) -> HistoryPage:
    """
    A page of a room's messages in seq order.

    after=N: the messages following seq N (a reconnect or a gap fill);
    before=N: the newest messages older than seq N ("load older");
    neither: the newest messages.
    """
    # The room's last_seq is read before the messages: a message is committed in
    # the same transaction that takes its seq, so every seq up to the value read
    # here is visible to the query that follows.
    last_seq = room_last_seq(room_id=room_id) or 0
    messages = Message.objects.filter(room_id=room_id, seq__lte=last_seq)
    if after is not None:
        page = list(messages.filter(seq__gt=after).order_by("seq")[: limit + 1])
        has_more = len(page) > limit
        page = page[:limit]
        # Never past the room's last seq: a cursor from a stale client (a room
        # recreated under the same slug) echoed back would hide the messages
        # that take the seqs in between.
        through = page[-1].seq if has_more else last_seq
        return HistoryPage(messages=page, through=through, has_more=has_more)
    through = last_seq
    if before is not None:
        messages = messages.filter(seq__lt=before)
        # An older page says nothing about the seqs from `before` on.
        through = max(0, min(before - 1, last_seq))
    page = list(messages.order_by("-seq")[: limit + 1])
    has_more = len(page) > limit
    page.reverse()
    page = page[-limit:] if has_more else page
    return HistoryPage(messages=page, through=through, has_more=has_more)
