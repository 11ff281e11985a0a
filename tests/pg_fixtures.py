"""pytest plugin: one real PostgreSQL server per test session (``postgres``), a fresh database per test (``pg_db``).

Register it in tests/conftest.py with ``pytest_plugins = ["tests.pg_fixtures"]``,
or import the fixtures into a test module. A missing server fails the test
with the Debian package to install; it is never skipped silently.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest

from tests.pg import PostgresServer, PostgresUnavailable, start_postgres

_seq = itertools.count(1)


@pytest.fixture(scope="session")
def postgres() -> PostgresServer:
    """A running PostgreSQL on 127.0.0.1 (password auth over TCP), stopped when the session ends."""
    try:
        server = start_postgres()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL is needed for this test: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Database:
    """A database of the session's server: what a client needs to reach it."""

    server: PostgresServer
    name: str

    @property
    def jdbc_url(self) -> str:
        return self.server.jdbc_url_for(self.name)

    @property
    def conninfo(self) -> str:
        return self.server.conninfo(self.name)

    @property
    def user(self) -> str:
        return self.server.user

    @property
    def password(self) -> str:
        return self.server.password

    def connect(self, **kwargs):
        return self.server.connect(self.name, **kwargs)


@pytest.fixture
def pg_db(postgres: PostgresServer) -> Database:
    """A fresh, empty database for one test, dropped afterwards."""
    name = postgres.create_database(f"t{next(_seq)}")
    try:
        yield Database(postgres, name)
    finally:
        postgres.drop_database(name)
