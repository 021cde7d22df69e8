"""Shared fixtures: fresh databases (SQLite and the local PostgreSQL) and real servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from mrm.core import db
from mrm.core.settings import Settings
from mrm.stack import BackgroundStack
from tests.support import postgres
from tests.support.auth import TEST_TOKEN, seed_test_token

PG_ADMIN_URL = postgres.ADMIN_URL
_pg_base = postgres.server_url


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(postgres.PostgresGate(), "mrm-postgres-gate")


def pytest_report_header() -> str:
    """Say which databases this run uses (the storage suite runs on both)."""
    version = postgres.version()
    if version is not None:
        pg = f"PostgreSQL {version} at {_pg_base()} (a fresh database per test)"
    elif postgres.required():
        pg = f"PostgreSQL at {_pg_base()} NOT REACHABLE; its tests will fail"
    else:
        pg = f"PostgreSQL at {_pg_base()} NOT REACHABLE; its tests will be skipped"
    return f"databases: embedded SQLite (a fresh file per test) and {pg}"


@pytest.fixture(scope="session", autouse=True)
def _suite_credential() -> Iterator[None]:
    """MRM_TOKEN for fixtures of every scope (the function-scoped one below restores it
    after a test that changes it)."""
    before = os.environ.get("MRM_TOKEN")
    os.environ["MRM_TOKEN"] = TEST_TOKEN
    yield
    if before is None:
        os.environ.pop("MRM_TOKEN", None)
    else:
        os.environ["MRM_TOKEN"] = before


@pytest.fixture(autouse=True)
def _isolated_client_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mrmctl's trust store lives in a per-test directory, never in ~/.config; clients
    present the suite's token unless a test says otherwise."""
    monkeypatch.setenv("MRM_CONFIG_DIR", str(tmp_path_factory.mktemp("mrmctl-config")))
    monkeypatch.delenv("MRM_LEDGER_VKEY", raising=False)
    for name in ("MRM_AUTH", "MRM_TOKEN_FILE", "MRM_OIDC_TOKEN", "MRM_OIDC_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("ACTIONS_ID_TOKEN_REQUEST_URL", raising=False)
    monkeypatch.setenv("MRM_TOKEN", TEST_TOKEN)


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The local PostgreSQL server's admin URL; a test using it (even through another
    fixture) is marked `postgres` and skipped when the server does not answer (on CI,
    MRM_TEST_REQUIRE_POSTGRES=1, failed). See tests/support/postgres.py."""
    postgres.require_server()
    return postgres.ADMIN_URL


@pytest.fixture
def pg_url(postgres_server: str) -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    with postgres.fresh_database() as url:
        yield url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mrm.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest) -> str:
    """The same test on the embedded default and on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = db.create_engine(database_url)
    db.upgrade(eng)
    yield eng
    eng.dispose()


@dataclass
class RunningLedger:
    addr: str
    settings: Settings
    stack: BackgroundStack

    @property
    def registry_addr(self) -> str:
        return self.stack.stack.registry_addr

    @property
    def proxy_addr(self) -> str:
        return self.stack.stack.proxy_addr

    @property
    def explain_addr(self) -> str:
        return self.stack.stack.explain_addr

    @property
    def http_addr(self) -> str:
        return self.stack.stack.http_addr


def start_ledger(home: Path, database_url: str | None = None, **overrides: object) -> RunningLedger:
    defaults: dict[str, object] = {
        "ledger_addr": "127.0.0.1:0",
        "registry_addr": "127.0.0.1:0",
        "proxy_addr": "127.0.0.1:0",
        "proxy_metrics_addr": "127.0.0.1:0",
        "proxy_http_addr": "127.0.0.1:0",  # never the default 8080: another run may hold it
        "explain_addr": "127.0.0.1:0",
        "monitor_addr": "127.0.0.1:0",
        "monitor_metrics_addr": "127.0.0.1:0",
        "http_addr": "127.0.0.1:0",
        # Tests count leaves from 0; the ACCESS records of the stack's own tokens
        # are tested where they are the subject (tests/e2e/test_auth_*).
        "auth_record_tokens": False,
    }
    settings = Settings(home=home, database_url=database_url, **(defaults | overrides))  # type: ignore[arg-type]
    if not settings.insecure:
        seed_test_token(settings.resolved_tokens_file())
    stack = BackgroundStack(settings)
    return RunningLedger(addr=stack.stack.ledger_addr, settings=settings, stack=stack)


@pytest.fixture
def running_stack(tmp_path: Path) -> Iterator[RunningLedger]:
    """The whole stack (every service, real gRPC and HTTP) on a fresh SQLite database."""
    running = start_ledger(tmp_path / "mrm-home")
    yield running
    running.stack.stop()


@pytest.fixture
def running_stack_pg(tmp_path: Path, pg_url: str) -> Iterator[RunningLedger]:
    """The whole stack on a fresh PostgreSQL database."""
    running = start_ledger(tmp_path / "mrm-home", pg_url)
    yield running
    running.stack.stop()


@pytest.fixture
def ledger_server(running_stack: RunningLedger) -> RunningLedger:
    """The older name of `running_stack` (it never was the ledger alone)."""
    return running_stack


@pytest.fixture
def pg_ledger_server(running_stack_pg: RunningLedger) -> RunningLedger:
    """The older name of `running_stack_pg`."""
    return running_stack_pg
