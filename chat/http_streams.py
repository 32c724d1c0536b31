"""
The HTTP transport's receiving side (docs/protocol.md): an event stream
(Server-Sent Events) per participant, and its long-poll form for where a proxy
holds streamed responses back.

Plain ASGI applications, not Channels' AsyncHttpConsumer: that consumer
handles a request's events one at a time, so while its handler streams, the
client's disconnect is not seen until the handler returns, and a participant
whose browser went away would stay in the room for as long as the stream
lasted. Here a task reads the request's events beside the stream and ends it
on the disconnect.

Every stream and poll under way counts against CHAT_MAX_CONNECTIONS as a
socket does (chat/capacity.py). A stream that opens counts as a join against
the join limits; so does a poll that reaches an instance without the
participant.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils.translation import gettext as _

from . import admission, protocol, selectors
from .addresses import scope_address
from .capacity import connections
from .http_participants import (
    HttpParticipant,
    get_participants,
    participant_for,
    ticket_read,
)
from .hub import get_hub
from .logs import cause, is_outage
from .protocol import ProtocolError
from .visitors import scope_visitor

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

# How soon a browser's EventSource reconnects after its stream ended.
RETRY_MS = 1000
NO_STORE = [(b"cache-control", b"no-store")]
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    # nginx (and proxies that honour it) pass the stream on as it comes.
    (b"x-accel-buffering", b"no"),
    *NO_STORE,
]
JSON_HEADERS = [(b"content-type", b"application/json"), *NO_STORE]


async def respond(send: Send, status: int, body: bytes, headers: list) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def refuse(send: Send, exc: ProtocolError) -> None:
    status, extra = protocol.http_refusal(exc.code)
    headers = [
        *JSON_HEADERS,
        *((n.lower().encode(), v.encode()) for n, v in extra.items()),
    ]
    frame = protocol.error_frame(exc.code, exc.message)
    await respond(send, status, protocol.encode(frame).encode(), headers)


def seq_of(value: str | None) -> int | None:
    """A last_seq from a query string or a Last-Event-ID header."""
    if not value:
        return None
    if not value.isascii() or not value.isdigit() or int(value) > protocol.SEQ_MAX:
        raise ProtocolError(
            protocol.INVALID_FRAME,
            _("last_seq must be null or an integer from 0 to %(max)d.")
            % {"max": protocol.SEQ_MAX},
        )
    return int(value)


async def watch(receive: Receive, ended: asyncio.Event, who: HttpParticipant) -> None:
    """Set `ended` when the client goes away."""
    while (await receive())["type"] != "http.disconnect":
        pass
    ended.set()
    who.wake.set()


class Endpoint:
    """What a stream and a poll share: GET only, a place among the process's
    connections, the room and the ticket checked, refusals as error frames."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "GET":
            await respond(
                send,
                405,
                b"",
                [(b"allow", b"GET"), (b"content-length", b"0")],
            )
            return
        if not connections.claim():
            await refuse(
                send,
                ProtocolError(
                    protocol.SERVER_FULL,
                    _("This server is full just now; try again shortly."),
                ),
            )
            return
        # Whether the response began: a refusal can no longer be sent after it.
        started = False

        async def tracked(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.serve(scope, receive, tracked)
        except ProtocolError as exc:
            if not started:
                await refuse(send, exc)
        except Exception as exc:
            logger.error(
                "http_failed path=%s cause=%s",
                scope["path"],
                cause(exc),
                exc_info=not is_outage(exc),
            )
            if not started:
                await refuse(
                    send,
                    ProtocolError(
                        protocol.UNAVAILABLE,
                        _("The server could not handle that just now; try again."),
                    ),
                )
        finally:
            connections.release()

    async def participant(
        self, scope: Scope, query: dict[str, list[str]], *, counts_as_join: bool
    ) -> tuple[HttpParticipant, bool]:
        """The participant the request's ticket names, made here when this
        process has none (then True). A join counted when `counts_as_join`, or
        when it is made."""
        slug = scope["url_route"]["kwargs"]["slug"]
        room = admission.room_open(
            await database_sync_to_async(selectors.room_get)(slug=slug), slug
        )
        ticket = ticket_read(
            first(query, "ticket"),
            room_id=room.pk,
            visitor=scope_visitor(scope),
        )
        known = get_participants().get(ticket.connection_id)
        if counts_as_join or known is None or known.gone:
            refused = await admission.join_refused(
                visitor=ticket.visitor, address=scope_address(scope)
            )
            if refused:
                raise admission.join_refusal()
        # Before the participant's connection is recorded: it names this
        # instance.
        await get_hub().start()
        return participant_for(
            ticket, room=room, user=scope.get("user"), address=scope_address(scope)
        )

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


def query_of(scope: Scope) -> dict[str, list[str]]:
    return parse_qs(scope.get("query_string", b"").decode("latin-1"))


def first(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    return values[0] if values else None


class EventsEndpoint(Endpoint):
    """GET /http/rooms/<slug>/events?ticket=T[&last_seq=N]: the frames of the
    room as Server-Sent Events, a welcome first. A browser's EventSource
    resumes it by itself, with Last-Event-ID."""

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = query_of(scope)
        headers = dict(scope.get("headers", ()))
        resume = headers.get(b"last-event-id")
        last_seq = seq_of(
            resume.decode("latin-1") if resume else first(query, "last_seq")
        )
        participant, _made = await self.participant(scope, query, counts_as_join=True)
        ended = asyncio.Event()

        async def write(data: bytes) -> None:
            try:
                await send(
                    {"type": "http.response.body", "body": data, "more_body": True}
                )
            except Exception:  # noqa: BLE001 - the client went away
                ended.set()

        with participant.held():
            await participant.welcome(last_seq)
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": STREAM_HEADERS,
                }
            )
            watcher = asyncio.create_task(watch(receive, ended, participant))
            try:
                await write(f"retry: {RETRY_MS}\n\n".encode())
                await participant.stream(
                    write,
                    ended=ended,
                    heartbeat=settings.CHAT_STREAM_HEARTBEAT_SECONDS,
                    # chat.transport.StreamMiddleware's view of the response.
                    direct=scope.get("stream"),
                )
                if not ended.is_set():
                    with contextlib.suppress(Exception):
                        await send({"type": "http.response.body", "body": b""})
            finally:
                watcher.cancel()


class PollEndpoint(Endpoint):
    """GET /http/rooms/<slug>/poll?ticket=T&last_seq=N[&cursor=C,...]: the
    frames queued since this process's cursor, as JSON, held up to
    CHAT_POLL_HOLD_SECONDS while there are none. A welcome comes first where
    no cursor is this process's (the first poll, or the first to reach this
    instance)."""

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = query_of(scope)
        last_seq = seq_of(first(query, "last_seq"))
        participant, made = await self.participant(scope, query, counts_as_join=False)
        ended = asyncio.Event()
        with participant.held():
            after = participant.cursor_number(first(query, "cursor"))
            if made or after is None or participant.stale or not participant.joined:
                await participant.welcome(last_seq)
                after = 0
            watcher = asyncio.create_task(watch(receive, ended, participant))
            try:
                queued, cursor = await participant.poll(
                    after, ended=ended, hold=settings.CHAT_POLL_HOLD_SECONDS
                )
            finally:
                watcher.cancel()
            if ended.is_set():
                return
            # The frames are JSON already, encoded once for every participant.
            # Each has its key beside it (or null): the same on every instance,
            # so that a client whose polls go round them tells each frame once.
            frames = ",".join(q.text for q in queued)
            keys = json.dumps([q.key for q in queued])
            body = f'{{"frames":[{frames}],"keys":{keys},"cursor":"{cursor}"}}'
            await respond(send, 200, body.encode(), JSON_HEADERS)
