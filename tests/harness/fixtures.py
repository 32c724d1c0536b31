"""
The pytest fixtures of the test modules that start processes; a module takes
them by importing these functions (pytest knows them by their `name`).
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import NamedTuple

import pytest

from .clients import ChatClient, Server
from .database import Database, shared_database
from .http import session_cookie


@pytest.fixture(scope="module", name="database")
def fixture_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """The module's processes share one database."""
    with shared_database(tmp_path_factory) as database:
        yield database


class FreshRoom(NamedTuple):
    slug: str
    id: int


@pytest.fixture(name="room")
def fixture_room(database: Database) -> FreshRoom:
    """A fresh room, so tests that share the module's database do not share
    counts."""
    slug = f"r-{uuid.uuid4().hex[:8]}"
    return FreshRoom(slug, database.create_room(slug))


MakeClient = Callable[..., Awaitable[ChatClient]]


@pytest.fixture(name="clients")
async def fixture_clients() -> AsyncIterator[MakeClient]:
    """Connect ChatClients, each a visitor of its own (a fresh cookie) unless
    given a cookie (None: no cookie at all); all closed after the test."""
    made: list[ChatClient] = []

    async def make(
        nickname: str,
        slug: str,
        server: Server,
        *,
        servers: list[Server] | None = None,
        cookie: str | bool | None = True,
    ) -> ChatClient:
        if cookie is True:
            cookie = await session_cookie(server, slug)
        client = ChatClient(nickname, slug, cookie=cookie or None, servers=servers)
        made.append(client)
        await client.connect(server)
        return client

    yield make
    await asyncio.gather(*(client.close() for client in made))
