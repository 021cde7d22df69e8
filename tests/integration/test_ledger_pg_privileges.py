"""On PostgreSQL the services' role may read and append, and nothing else."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from mrm.core import db
from tests.support.ledger import new_record, open_ledger


@pytest.fixture
def app_role(pg_url: str) -> Iterator[str]:
    role = f"mrm_app_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(pg_url)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    yield role
    with admin.begin() as conn:
        conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
        conn.exec_driver_sql(f'DROP ROLE "{role}"')
    admin.dispose()


def test_app_role_can_append_but_not_change(pg_url: str, app_role: str, tmp_path: Path) -> None:
    owner = db.create_engine(pg_url)
    db.upgrade(owner, app_role=app_role)
    owner.dispose()
    as_app = db.create_engine(pg_url.replace("://root@", f"://{app_role}@"))
    ledger = open_ledger(as_app, tmp_path)
    ledger.append([new_record(i) for i in range(3)], "svc")
    ledger.latest_checkpoint(refresh=True)
    for statement in (
        "UPDATE ledger_leaves SET body = '{}'",
        "DELETE FROM ledger_leaves",
        "TRUNCATE ledger_leaves",
        "UPDATE ledger_checkpoints SET note = ''",
        "TRUNCATE ledger_checkpoints",
        "DELETE FROM ledger_log",
    ):
        with (
            pytest.raises(sa.exc.ProgrammingError, match="permission denied"),
            as_app.begin() as conn,
        ):
            conn.exec_driver_sql(statement)
    assert ledger.store.size() == 3
    as_app.dispose()


def test_bad_role_name_is_refused(pg_url: str) -> None:
    engine = db.create_engine(pg_url)
    try:
        with pytest.raises(ValueError, match="database_app_role"):
            db.upgrade(engine, app_role='x"; DROP TABLE ledger_leaves; --')
    finally:
        engine.dispose()
