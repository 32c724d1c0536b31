"""Service calls from several threads at once, each with its own connection."""

import pytest
from django.db import connection


def own_connection(function, *args):
    """Run in a thread with its own database connection, closed after."""
    try:
        return function(*args)
    finally:
        connection.close()


def needs_server_database():
    if connection.vendor == "sqlite":
        # SQLite's in-memory test database answers a second writer with "table is
        # locked" instead of waiting as the file database (busy timeout) does.
        pytest.skip("concurrent writers need a server database (DATABASE_URL)")
