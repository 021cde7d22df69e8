"""The local PostgreSQL server the suite's `postgres` tests use, and throwaway databases on it.

A test needs PostgreSQL when it uses the `postgres_server` fixture (directly or
through `pg_url`, `pg_ledger_server`, …) or the PostgreSQL half of `database_url`;
tests/conftest.py marks those `postgres`. Whether the server answers is asked once
per session. When it does not, the marked tests are skipped with the reason, so a
newcomer without PostgreSQL can still run the rest. CI sets
MRM_TEST_REQUIRE_POSTGRES=1: an unreachable server then fails those tests, and a
session in which no `postgres` test ran fails too.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

ADMIN_URL = os.environ.get(
    "MRM_TEST_DATABASE_URL",
    os.environ.get("MRM_TEST_PG_ADMIN", "postgresql://root@127.0.0.1:5432/postgres"),
)
"""A libpq URL of a role that may CREATE DATABASE; MRM_TEST_PG_ADMIN is its older name."""

REQUIRE_ENV = "MRM_TEST_REQUIRE_POSTGRES"
CONNECT_TIMEOUT_S = 2


def server_url() -> str:
    """ADMIN_URL without its database: where the throwaway databases are created."""
    return ADMIN_URL.rsplit("/", 1)[0]


def required() -> bool:
    """Whether this run must exercise PostgreSQL (CI): unreachable is then a failure."""
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


@functools.cache
def _probe() -> tuple[str | None, str | None]:
    try:
        with psycopg.connect(ADMIN_URL, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, first_line
    return (str(row[0]) if row else "?"), None


def version() -> str | None:
    """The server's version, or None when it does not answer (asked once per session)."""
    return _probe()[0]


def unreachable_reason() -> str | None:
    """Why the `postgres` tests cannot run, or None when the server answers."""
    error = _probe()[1]
    if error is None:
        return None
    host = server_url().rsplit("@", 1)[-1].removeprefix("postgresql://")
    return (
        f"PostgreSQL at {host} does not answer ({error}); set MRM_TEST_DATABASE_URL to a "
        f"libpq URL of a role that may CREATE DATABASE, or start the server "
        f"({REQUIRE_ENV}=1 makes this a failure)"
    )


def require_server() -> None:
    """Skip the current test when PostgreSQL does not answer, or fail it on CI."""
    reason = unreachable_reason()
    if reason is None:
        return
    if required():
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


@contextmanager
def fresh_database() -> Iterator[str]:
    """A new, empty database (a SQLAlchemy psycopg URL), dropped with its connections after."""
    require_server()
    name = f"mrm_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"{server_url().replace('postgresql://', 'postgresql+psycopg://', 1)}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class PostgresGate:
    """The pytest plugin (registered by tests/conftest.py) that marks, skips or fails
    the `postgres` tests and, on CI, fails a session in which none of them ran."""

    def __init__(self) -> None:
        self.ran = 0

    @staticmethod
    def needs_postgres(item: pytest.Item) -> bool:
        if "postgres_server" in getattr(item, "fixturenames", ()):
            return True
        callspec = getattr(item, "callspec", None)
        return callspec is not None and callspec.params.get("database_url") == "postgresql"

    @pytest.hookimpl(tryfirst=True)  # before `-m` selects by marker
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            if self.needs_postgres(item):
                item.add_marker(pytest.mark.postgres)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        if item.get_closest_marker("postgres") is not None:
            require_server()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and not report.skipped and "postgres" in report.keywords:
            self.ran += 1

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not required() or session.config.option.collectonly:
            return
        if self.ran == 0 and session.exitstatus in (pytest.ExitCode.OK, 0):
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            reporter = session.config.pluginmanager.get_plugin("terminalreporter")
            message = f"{REQUIRE_ENV} is set but no test marked `postgres` ran"
            if reporter is not None:
                reporter.write_line(f"ERROR: {message}", red=True, bold=True)
