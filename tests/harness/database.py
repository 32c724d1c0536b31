"""
A throwaway database for the processes of a test module (or a benchmark run):
made, migrated and filled through the chat's own management commands, read
back for assertions, and dropped.
"""

import contextlib
import os
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from .process import PYTHON, ROOT
from .servers import server_env

TABLES = (
    "chat_room",
    "chat_message",
    "chat_member",
    "chat_connection",
    "chat_instance",
)


class Database:
    """
    One database for every process of a test module, made and dropped here.

    With DATABASE_URL set (CI) a separate PostgreSQL database next to it
    (never pytest-django's); otherwise a temporary SQLite file.

    What the harness puts into the chat's tables goes through manage.py, in a
    process with the servers' own settings (`create(env)`): the app's models
    write the rows, not SQL of the harness's.
    """

    def __init__(self, workdir: str | Path) -> None:
        self.workdir = Path(workdir)
        base = os.environ.get("DATABASE_URL", "")
        self.base_url = base if base.startswith(("postgres", "postgresql")) else ""
        self.name = f"chat_proc_{uuid.uuid4().hex[:10]}"
        self.sqlite_path = self.workdir / "chat.sqlite3"
        self.manage_env: dict[str, str] | None = None

    @property
    def env(self) -> dict[str, str]:
        """The settings that point a process at this database."""
        if self.base_url:
            parts = urlsplit(self.base_url)
            return {"DATABASE_URL": urlunsplit(parts._replace(path=f"/{self.name}"))}
        return {"SQLITE_PATH": str(self.sqlite_path)}

    def _pg(self, url: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(url or self.base_url, autocommit=True, connect_timeout=5)

    def create(self, env: Mapping[str, str]) -> None:
        """Make the database and migrate it; `env` (server_env's) is also the
        environment of every later manage() run."""
        if self.base_url:
            with self._pg() as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        self.manage_env = dict(env)
        self.manage("migrate", "--noinput", "-v", "0", timeout=120)

    def drop(self) -> None:
        if self.base_url:
            with self._pg() as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def manage(self, *args: str, timeout: float = 60) -> str:
        """Run one manage.py command on this database; its standard output."""
        assert self.manage_env is not None, "create() the database first"
        result = subprocess.run(
            [PYTHON, "manage.py", *args],
            cwd=ROOT,
            env=self.manage_env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode:
            pytest.fail(
                f"manage.py {args[0]} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def create_room(self, slug: str, name: str | None = None) -> int:
        """A fresh room, so tests that share the database do not share counts;
        its id. Made by `manage.py room_create`, as an operator would."""
        output = self.manage("room_create", slug, "--name", name or slug)
        return int(output.split()[-1])

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """Rows of one SQL query (placeholders as %s) on the shared database."""
        if self.base_url:
            with self._pg(self.env["DATABASE_URL"]) as conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if cursor.description else []
        with contextlib.closing(sqlite3.connect(self.sqlite_path, timeout=20)) as conn:
            with conn:
                return conn.execute(sql.replace("%s", "?"), params).fetchall()

    def count(self, table: str, where: str = "", params: Sequence[object] = ()) -> int:
        """Rows of one of the chat's tables, optionally filtered."""
        assert table in TABLES, table
        sql = f"SELECT COUNT(*) FROM {table}"  # noqa: S608 - a known table name
        return self.query(sql + (f" WHERE {where}" if where else ""), params)[0][0]


@contextlib.contextmanager
def shared_database(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """A migrated throwaway database for processes, dropped after."""
    database = Database(tmp_path_factory.mktemp("procdb"))
    try:
        database.create(server_env(database, ""))
        yield database
    finally:
        database.drop()
