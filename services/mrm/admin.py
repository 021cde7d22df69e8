"""`mrm`: the server-side command. `mrm up` runs the stack; `mrm db upgrade` migrates."""

from __future__ import annotations

import asyncio
import logging
import os
import sys

import click
from pydantic import ValidationError

from mrm.core import db
from mrm.core.errors import MrmError
from mrm.core.server import stop_on_signals
from mrm.core.settings import Settings


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "MRM_" + str(first["loc"][0]).upper() if first["loc"] else "settings"
        raise click.UsageError(f"{field}: {first['msg']}") from None


def _logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group()
def main() -> None:
    """MRM server: a tamper-evident audit trail for ML models in production."""


@main.command()
def up() -> None:
    """Run every MRM service locally until SIGTERM or Ctrl-C."""
    from mrm.stack import Stack

    settings = _settings()
    _logging(settings.log_level)

    # A thread that wakes from a database round trip while holding the ledger's
    # append lock must get the GIL back quickly, or every waiting request's
    # Python work stretches the lock (a convoy). The default is 5 ms.
    sys.setswitchinterval(0.0005)

    async def run() -> None:
        stop = stop_on_signals()
        stack = await Stack.start(settings)
        click.echo(f"mrm: registry {settings.registry_addr}")
        click.echo(f"mrm: proxy    {settings.proxy_addr}  (Open Inference Protocol v2, gRPC)")
        click.echo(f"mrm: ledger   {settings.ledger_addr}  (origin {stack.ledger.origin})")
        click.echo(f"mrm: verifier key {stack.ledger.verifier_key}")
        click.echo("mrm: ready", err=False)
        await stop.wait()
        logging.getLogger("mrm").info("signal received; shutting down")
        await stack.stop()

    try:
        asyncio.run(run())
    except MrmError as exc:
        _fail(exc.message, exc)
    except OSError as exc:
        _fail(f"cannot start: {exc}", exc)


@main.group(name="db")
def db_group() -> None:
    """Database schema management."""


@db_group.command(name="upgrade")
@click.option("--app-role", help="PostgreSQL role to grant SELECT and INSERT (and nothing more).")
def db_upgrade(app_role: str | None) -> None:
    """Apply every pending migration."""
    settings = _settings()
    _logging(settings.log_level)
    try:
        db.upgrade(
            db.create_engine(settings.resolved_database_url()),
            app_role=app_role or settings.database_app_role,
        )
    except (MrmError, ValueError) as exc:
        _fail(str(exc), exc)
    click.echo("mrm: database is at the newest schema")


def _fail(message: str, exc: BaseException) -> None:
    if os.environ.get("MRM_DEBUG"):
        raise exc
    click.echo(f"mrm: error: {message}", err=True)
    sys.exit(1)
