"""
What the mutes and bans in force forbid (chat/models.py: Sanction), read from
the database as each message is saved and each join is claimed: the database
is the truth, on every instance, also for one that missed the layer event of
the moderator's action (Redis away). The room's own rules, slow mode and
members only, are read with them, in the same query.
"""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Exists, F, Max, OuterRef, Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .. import protocol
from ..models import Connection, Message, Room, Sanction
from ..protocol import ProtocolError
from .save_queue import Draft


def _in_force(now: datetime) -> QuerySet[Sanction]:
    return Sanction.objects.filter(
        Q(expires__isnull=True) | Q(expires__gt=now), lifted__isnull=True
    )


def in_force(room_id: int, now: datetime | None = None) -> QuerySet[Sanction]:
    """The mutes and bans that hold in the room now (its own and every room's)."""
    return _in_force(now or timezone.now()).filter(
        Q(room_id=room_id) | Q(room__isnull=True)
    )


@dataclass(frozen=True)
class Rules:
    """A room's rules for posting, and whether any sanction holds there now."""

    slow_mode_seconds: int
    members_only: bool
    sanctioned: bool


def rooms_rules(room_ids: list[int]) -> dict[int, Rules]:
    """The Rules of each room, in one query (a save trip's rooms)."""
    here = _in_force(timezone.now()).filter(
        Q(room_id=OuterRef("pk")) | Q(room__isnull=True)
    )
    rows = (
        Room.objects.filter(pk__in=room_ids)
        .annotate(sanctioned=Exists(here))
        .values_list("pk", "slow_mode_seconds", "members_only", "sanctioned")
    )
    return {pk: Rules(*rest) for pk, *rest in rows}


def rooms_banning(room_ids: Iterable[int]) -> set[int]:
    """The rooms among these where a ban is in force (the room's own or every
    room's); one query, for a lot of joins: most rooms have none, and their
    joins then ask nothing more (join_refusal)."""
    rooms = set(room_ids)
    found = set(
        _in_force(timezone.now())
        .filter(Q(room_id__in=rooms) | Q(room__isnull=True), kind=Sanction.Kind.BAN)
        .order_by()
        .values_list("room_id", flat=True)
        .distinct()
    )
    return rooms if None in found else found


def _of(visitor: str, user_id: int | None, address: str = "") -> Q:
    """Sanctions that name this visitor, account or address."""
    match = Q(visitor=visitor)
    if user_id is not None:
        match |= Q(user_id=user_id)
    if address:
        match |= Q(address=address)
    return match


def seconds_left(until: datetime | None, now: datetime | None = None) -> int | None:
    """Whole seconds until `until` (at least 1), or None for good."""
    if until is None:
        return None
    return max(1, math.ceil((until - (now or timezone.now())).total_seconds()))


def _duration(seconds: int | None) -> str:
    if seconds is None:
        return _("for good")
    if seconds < 120:
        return ngettext("for %(n)d more second", "for %(n)d more seconds", seconds) % {
            "n": seconds
        }
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return ngettext("for %(n)d more minute", "for %(n)d more minutes", minutes) % {
            "n": minutes
        }
    hours = math.ceil(minutes / 60)
    if hours < 48:
        return ngettext("for %(n)d more hour", "for %(n)d more hours", hours) % {
            "n": hours
        }
    days = math.ceil(hours / 24)
    return ngettext("for %(n)d more day", "for %(n)d more days", days) % {"n": days}


def refusal(
    sanction: Sanction, client_id: str | None = None, now: datetime | None = None
) -> ProtocolError:
    """What a muted, banned or kicked participant is told, with how long it
    holds."""
    left = seconds_left(sanction.expires, now)
    if sanction.kind == Sanction.Kind.KICK:
        code, left = protocol.KICKED, None
        message = _("A moderator removed you from this room; you may join again.")
    elif sanction.kind == Sanction.Kind.BAN:
        code = protocol.BANNED
        message = _("You are banned from this room %(how_long)s.") % {
            "how_long": _duration(left)
        }
    else:
        code = protocol.MUTED
        message = _("A moderator muted you %(how_long)s; you can still read.") % {
            "how_long": _duration(left)
        }
    if sanction.reason:
        message += " " + _("Reason: %(reason)s") % {"reason": sanction.reason}
    error = ProtocolError(code, message, client_id)
    error.retry_after = left
    return error


def join_refusal(
    *, room_id: int, visitor: str, user_id: int | None, address: str
) -> ProtocolError | None:
    """`banned` for a visitor, account or address banned from the room."""
    ban = (
        in_force(room_id)
        .filter(_of(visitor, user_id, address), kind=Sanction.Kind.BAN)
        # For good first, then the one that ends last.
        .order_by(F("expires").desc(nulls_first=True))
        .first()
    )
    return refusal(ban) if ban is not None else None


def _slow_mode_refusal(
    seconds: int, last: datetime, now: datetime, client_id: str
) -> ProtocolError:
    left = seconds_left(last + timedelta(seconds=seconds), now)
    error = ProtocolError(
        protocol.SLOW_MODE,
        ngettext(
            "This room is in slow mode: one message every %(every)d second. "
            "Wait %(left)d more.",
            "This room is in slow mode: one message every %(every)d seconds. "
            "Wait %(left)d more.",
            seconds,
        )
        % {"every": seconds, "left": left},
        client_id or None,
    )
    error.retry_after = left
    return error


SAYS_MORE: list[str] = [Sanction.Kind.BAN, Sanction.Kind.KICK, Sanction.Kind.MUTE]


def _holds(sanction: Sanction, draft: Draft) -> bool:
    """Whether the sanction names the draft's sender (a kick: and the sender's
    connection was in the room before it)."""
    user_id = draft.get("user_id")
    if sanction.visitor != draft["visitor"] and (
        user_id is None or sanction.user_id != user_id
    ):
        return False
    if sanction.kind == Sanction.Kind.KICK:
        joined = draft.get("joined")
        return joined is not None and joined < sanction.created
    return True


def lot_refusals(
    *,
    room_id: int,
    drafts: Sequence[Draft],
    sanctions_only: bool = False,
    rules: Rules | None = None,
) -> list[ProtocolError | None]:
    """
    For each draft of a room's lot, why it may not be posted now, or None:
    muted or banned, over the room's slow mode, or not signed in where the room
    is members only. Moderators are held to none of it (`sanctions_only`: only
    mutes and bans count, for everyone: an edit or a deletion). The room's
    `rules` as a save trip read them (rooms_rules), or one query for them; one
    more for each rule that applies (the usual answer: none).
    """
    now = timezone.now()
    if rules is None:
        rules = rooms_rules([room_id]).get(room_id)
    refusals: list[ProtocolError | None] = [None] * len(drafts)
    if rules is None:
        return refusals
    slow_mode, members_only = rules.slow_mode_seconds, rules.members_only
    sanctioned = rules.sanctioned
    if sanctions_only:
        held = list(range(len(drafts)))
        slow_mode, members_only = 0, False
    else:
        held = [i for i, draft in enumerate(drafts) if not draft.get("moderator")]
    if not held:
        return refusals
    if sanctioned:
        match = Q()
        for i in held:
            match |= _of(drafts[i]["visitor"], drafts[i].get("user_id"))
        found = list(in_force(room_id, now).filter(match))
        # A ban says more than a kick, a kick more than a mute.
        found.sort(key=lambda sanction: SAYS_MORE.index(sanction.kind))
        for i in held:
            draft = drafts[i]
            for sanction in found:
                if _holds(sanction, draft):
                    refusals[i] = refusal(sanction, draft["client_id"] or None, now)
                    break
    if members_only:
        for i in held:
            if refusals[i] is None and drafts[i].get("user_id") is None:
                refusals[i] = ProtocolError(
                    protocol.MEMBERS_ONLY,
                    _("Only signed-in members may post in this room."),
                    drafts[i]["client_id"] or None,
                )
    if slow_mode:
        visitors = {drafts[i]["visitor"] for i in held if refusals[i] is None}
        last_sent = dict(
            Message.objects.filter(
                room_id=room_id,
                visitor__in=visitors,
                created__gt=now - timedelta(seconds=slow_mode),
            )
            .values("visitor")
            .annotate(last=Max("created"))
            .values_list("visitor", "last")
        )
        for i in held:
            draft = drafts[i]
            if refusals[i] is not None:
                continue
            last = last_sent.get(draft["visitor"])
            if last is not None:
                refusals[i] = _slow_mode_refusal(
                    slow_mode, last, now, draft["client_id"]
                )
            else:
                # Its next draft in this lot waits the same.
                last_sent[draft["visitor"]] = now
    return refusals


def connections_sanctioned(
    *, instance: str, since: datetime
) -> list[tuple[str, ProtocolError]]:
    """
    The connections this instance serves that a ban or kick given since
    `since` holds for, each with what it is told. The heartbeat asks
    (chat/liveness.py): a socket whose instance missed the moderator's layer
    event is closed within a beat, whether or not it acts.
    """
    now = timezone.now()
    recent = Sanction.objects.filter(
        Q(expires__isnull=True) | Q(expires__gt=now),
        created__gte=since,
        kind__in=[Sanction.Kind.BAN, Sanction.Kind.KICK],
        lifted__isnull=True,
    )
    found = []
    for sanction in recent:
        whose = Q(member__visitor=sanction.visitor)
        if sanction.user_id is not None:
            whose |= Q(member__user_id=sanction.user_id)
        if sanction.address:
            # Staff behind the same address are not taken with it.
            whose |= Q(address=sanction.address) & ~Q(member__user__is_staff=True)
        connections = Connection.objects.filter(whose, instance_id=instance)
        if sanction.room_id is not None:
            connections = connections.filter(member__room_id=sanction.room_id)
        if sanction.kind == Sanction.Kind.KICK:
            connections = connections.filter(opened__lt=sanction.created)
        told = refusal(sanction, now=now)
        found += [(pk, told) for pk in connections.values_list("pk", flat=True)]
    return found
