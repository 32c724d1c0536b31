"""
The HTTP transport's POSTs (docs/protocol.md): a join, answered with the
welcome and the participant's ticket, and the participant's frames (message,
typing, stop_typing, ping, leave), answered with the frames the WebSocket
answers them with. Any instance serves any of them: the ticket says who is
asking, and the database says whether they are in the room.

Django views, so that the session, the CSRF check and the visitor's cookies
hold as for every other form of the site.
"""

import asyncio
import contextvars
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable

from channels.db import database_sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from django.views import csrf
from django.views.decorators.http import require_POST

from . import acts, admission, metrics, protocol, selectors
from .addresses import request_address
from .http_participants import Ticket, get_participants, participant_for, ticket_read
from .hub import get_hub
from .logs import cause, is_outage
from .models import Room
from .permissions import is_moderator
from .protocol import Frame, ProtocolError
from .services import messages, presence
from .typing import typing_relay
from .visitors import account_of, visitor_of_request

logger = logging.getLogger(__name__)

View = Callable[[HttpRequest, str], Awaitable[HttpResponse]]


def frame_response(frame: Frame, status: int = 200) -> HttpResponse:
    response = HttpResponse(
        protocol.encode(frame), status=status, content_type="application/json"
    )
    response["Cache-Control"] = "no-store"
    return response


def refusal_response(exc: ProtocolError) -> HttpResponse:
    """An error frame, with the status its code has (protocol.HTTP_STATUS)."""
    status, headers = protocol.http_refusal(exc.code, exc.retry_after)
    metrics.REFUSALS.labels(exc.code).inc()
    response = frame_response(exc.frame(), status)
    for name, value in headers.items():
        response[name] = value
    return response


async def _apart(answer: Awaitable[HttpResponse]) -> HttpResponse:
    """
    A view's answer, awaited in a context of its own. Django runs the site's
    views under its sync-only middleware (WhiteNoise's, the health check's)
    from a thread, and each request's context names that thread's executor:
    a task or timer the view starts inherits it, and once the answer went out
    its database calls fail ("CurrentThreadExecutor already quit"). A join
    POST starts the grace of its participant, the hub, the join lots: they
    outlive the request.
    """
    return await asyncio.create_task(answer, context=contextvars.Context())  # type: ignore[arg-type] # a coroutine


def answers_frames(view: View) -> View:
    """Refusals as error frames; an outage or a bug as `unavailable` (logged)."""

    @functools.wraps(view)
    async def answering(request: HttpRequest, slug: str) -> HttpResponse:
        try:
            return await _apart(view(request, slug))
        except ProtocolError as exc:
            return refusal_response(exc)
        except Exception as exc:
            logger.error(
                "http_failed path=%s cause=%s",
                request.path,
                cause(exc),
                exc_info=not is_outage(exc),
            )
            return refusal_response(
                ProtocolError(
                    protocol.UNAVAILABLE,
                    _("The server could not handle that just now; try again."),
                )
            )

    return answering


async def room_for(slug: str) -> Room:
    room = await database_sync_to_async(selectors.room_get)(slug=slug)
    return admission.room_open(room, slug)


def visitor_for(request: HttpRequest) -> str:
    visitor = visitor_of_request(request)
    if visitor is None:
        raise ProtocolError(
            protocol.FORBIDDEN,
            _("This request carries no visitor cookie; open the room's page first."),
        )
    return visitor


def frame_of(request: HttpRequest) -> protocol.ClientFrame:
    """The request's body as a frame, checked as a WebSocket frame is."""
    too_large = ProtocolError(
        protocol.FRAME_TOO_LARGE,
        _("A frame has at most %(max)d bytes.")
        % {"max": settings.CHAT_MAX_FRAME_BYTES},
    )
    length = request.META.get("CONTENT_LENGTH") or "0"
    if length.isdigit() and int(length) > settings.CHAT_MAX_FRAME_BYTES:
        raise too_large
    try:
        text = request.body.decode("utf-8")
    except RequestDataTooBig:
        raise too_large from None
    except UnicodeDecodeError:
        raise ProtocolError(
            protocol.INVALID_FRAME, _("The frame is not valid UTF-8.")
        ) from None
    return protocol.parse_client_frame(text)


@require_POST
@answers_frames
async def http_join(request: HttpRequest, slug: str) -> HttpResponse:
    room = await room_for(slug)
    visitor = visitor_for(request)
    frame = frame_of(request)
    if not isinstance(frame, protocol.Join):
        raise ProtocolError(
            protocol.NOT_JOINED,
            _("Send a join frame first."),
            getattr(frame, "client_id", None) or None,
        )
    if await admission.join_refused(visitor=visitor, address=request_address(request)):
        raise admission.join_refusal()
    # Before the participant's connection is recorded: it names this instance.
    await get_hub().start()
    ticket = Ticket(uuid.uuid4().hex, room.pk, frame.nickname, visitor)
    participant, _made = participant_for(
        ticket,
        room=room,
        user=await request.auser(),
        address=request_address(request),
    )
    try:
        welcome = await participant.welcome(frame.last_seq)
    except BaseException:
        await participant.leave()
        raise
    # Kept for the grace: its stream may come here, or go to another instance.
    participant.park()
    return frame_response({**welcome, "ticket": participant.ticket.signed()})


@require_POST
@answers_frames
async def http_send(request: HttpRequest, slug: str) -> HttpResponse:
    room = await room_for(slug)
    frame = frame_of(request)
    try:
        ticket = ticket_read(
            request.GET.get("ticket"),
            room_id=room.pk,
            visitor=visitor_of_request(request),
        )
    except ProtocolError as exc:
        # A refused message names its client_id, as on a socket.
        exc.client_id = getattr(frame, "client_id", None) or None
        raise
    if isinstance(frame, protocol.Join):
        raise ProtocolError(protocol.ALREADY_JOINED, _("You have already joined."))
    if isinstance(frame, protocol.Message):
        return await post(request, room, ticket, frame)
    if isinstance(frame, protocol.Edit | protocol.Delete | protocol.Moderation):
        answer = await acts.act(
            acts.Actor(
                room=room,
                visitor=ticket.visitor,
                user=await request.auser(),
                address=request_address(request),
            ),
            frame,
        )
        return frame_response(answer) if answer else HttpResponse(status=204)
    if frame.type == protocol.LEAVE:
        await leave(ticket)
        return HttpResponse(status=204)
    # typing, stop_typing, ping: beyond the visitor's budget, dropped unsaid.
    if not await admission.signal_admitted(room_id=room.pk, visitor=ticket.visitor):
        return HttpResponse(status=204)
    if frame.type == protocol.PING:
        last_seq = await database_sync_to_async(selectors.room_last_seq)(
            room_id=room.pk
        )
        return frame_response(protocol.pong_frame(last_seq=last_seq))
    typing_relay(
        room_id=room.pk,
        nickname=ticket.nickname,
        connection_id=ticket.connection_id,
        active=frame.type == protocol.TYPING,
    )
    return HttpResponse(status=204)


async def post(
    request: HttpRequest, room: Room, ticket: Ticket, frame: protocol.Message
) -> HttpResponse:
    """Save a message of a participant in the room: answered with its saved
    copy (as the sender's socket gets it). The visitor's presence is what
    counts, not this participant's own: a tab whose stream another tab holds
    (static/chat/tabs.js) has none after the grace."""
    joined = await database_sync_to_async(selectors.visitor_in_room)(
        room_id=room.pk, visitor=ticket.visitor, nickname=ticket.nickname
    )
    if not joined:
        raise ProtocolError(
            protocol.NOT_JOINED, _("Send a join frame first."), frame.client_id or None
        )
    await admission.message_check(
        room_id=room.pk,
        visitor=ticket.visitor,
        address=request_address(request),
        client_id=frame.client_id,
    )
    user = await request.auser()
    moderator = user.is_staff and await database_sync_to_async(is_moderator)(
        user, room.pk
    )
    message, _delivered = await messages.amessage_post(
        room=room,
        nickname=ticket.nickname,
        visitor=ticket.visitor,
        text=frame.text,
        client_id=frame.client_id,
        user_id=account_of(user),
        moderator=moderator,
    )
    return frame_response(message)


async def leave(ticket: Ticket) -> None:
    """The participant's own leave, wherever its stream is."""
    participant = get_participants().get(ticket.connection_id)
    if participant is not None:
        await participant.leave(everywhere=True)
    else:
        await presence.aroom_leave(connection_id=ticket.connection_id)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """A request that failed Django's CSRF check: on the HTTP transport an
    error frame, elsewhere Django's own page."""
    if request.path.startswith("/http/"):
        return refusal_response(
            ProtocolError(
                protocol.FORBIDDEN,
                _("This request lacks the page's CSRF token; reload the page."),
            )
        )
    return csrf.csrf_failure(request, reason)
