"""Database engines and schema migrations (PostgreSQL via psycopg 3, or embedded SQLite)."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mrm.core.errors import FailedPrecondition, Unavailable

log = logging.getLogger(__name__)

_MIGRATIONS = Path(__file__).parent / "migrations"
_ROLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
# Tables the services may read and append to, never change: the ledger, and the
# registry's artifacts and stage history.
APPEND_ONLY_TABLES = (
    "ledger_log",
    "ledger_leaves",
    "ledger_checkpoints",
    "registry_artifacts",
    "registry_version_artifacts",
    "registry_stage_events",
)
# Tables the services also update (a model's description, ...): no DELETE.
MUTABLE_TABLES = ("registry_models", "registry_versions")


def create_engine(url: str) -> sa.Engine:
    """An engine with the settings the ledger relies on for durability."""
    if url.startswith("sqlite"):
        path = sa.make_url(url).database
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        # hide_parameters: an error must never carry record bodies into a log.
        engine = sa.create_engine(url, connect_args={"timeout": 30}, hide_parameters=True)
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        # SQLAlchemy's pysqlite driver defers BEGIN; make it explicit (and IMMEDIATE
        # for writers, see `begin_immediate`) so SQLite's locking is predictable.
        sa.event.listen(engine, "begin", _sqlite_begin)
        return engine
    return sa.create_engine(
        url, pool_pre_ping=True, pool_size=8, max_overflow=8, hide_parameters=True
    )


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # let the "begin" listener issue BEGIN
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _sqlite_begin(conn: sa.Connection) -> None:
    mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def upgrade(engine: sa.Engine, *, app_role: str | None = None) -> None:
    """Bring the schema to the newest migration, then (re)apply the app role's grants.

    Refuses, touching nothing, a database it cannot read (a corrupted SQLite
    file) or one migrated by a newer MRM than this one.
    """
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    try:
        conn = engine.connect()
    except sa.exc.DatabaseError as exc:
        if engine.dialect.name == "sqlite":
            raise _unreadable(engine, exc) from exc
        raise Unavailable(
            f"database unreachable ({_where(engine)}): {_short(exc)}; "
            "check MRM_DATABASE_URL and that the server is running"
        ) from exc
    with conn:
        try:
            current = MigrationContext.configure(conn).get_current_heads()
        except sa.exc.DatabaseError as exc:
            raise _unreadable(engine, exc) from exc
        conn.rollback()
        known = {rev.revision for rev in ScriptDirectory.from_config(cfg).walk_revisions()}
        newer = [rev for rev in current if rev not in known]
        if newer:
            raise FailedPrecondition(
                f"the database ({_where(engine)}) was migrated by a newer MRM "
                f"(schema revision {', '.join(newer)}; this MRM knows up to {head_revision()}); "
                "upgrade MRM, or point MRM_DATABASE_URL at another database"
            )
        with conn.begin():
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
            if app_role:
                grant_app_role(conn, app_role)


def _unreadable(engine: sa.Engine, exc: BaseException) -> FailedPrecondition:
    return FailedPrecondition(
        f"cannot read the database ({_where(engine)}): {_short(exc)}; if it is corrupted, "
        "restore it from a backup or move it away (MRM_HOME, MRM_DATABASE_URL)"
    )


def _where(engine: sa.Engine) -> str:
    """The database's URL without its password, for messages."""
    return engine.url.render_as_string(hide_password=True)


def head_revision() -> str:
    """The newest migration this code knows."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    return head


def grant_app_role(conn: sa.Connection, role: str) -> None:
    """The services' role may read and append, never change or remove, ledger rows."""
    if conn.dialect.name != "postgresql":
        return
    if not _ROLE_NAME.fullmatch(role):
        raise ValueError(f"database_app_role: {role!r} is not a plain PostgreSQL role name")
    for table in APPEND_ONLY_TABLES + MUTABLE_TABLES:
        conn.exec_driver_sql(f'REVOKE ALL ON {table} FROM PUBLIC, "{role}"')
        conn.exec_driver_sql(f'GRANT SELECT, INSERT ON {table} TO "{role}"')
    for table in MUTABLE_TABLES:
        conn.exec_driver_sql(f'GRANT UPDATE ON {table} TO "{role}"')
    conn.exec_driver_sql(f'GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO "{role}"')
    conn.exec_driver_sql(f'GRANT SELECT ON alembic_version TO "{role}"')


def ping(engine: sa.Engine) -> bool:
    """True when the database answers a trivial query."""
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
        return True
    except sa.exc.SQLAlchemyError as exc:
        log.warning("database not reachable: %s", _short(exc))
        return False


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
