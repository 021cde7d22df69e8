"""`mrm`: the server-side command. `mrm up` runs the stack; `mrm db upgrade` migrates."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import NoReturn

import click
from pydantic import ValidationError

from mrm.admin_auth import auth_group
from mrm.client.credentials import ClientAuth, CredentialsError
from mrm.core import db
from mrm.core.errors import MrmError
from mrm.core.server import stop_on_signals
from mrm.core.settings import SERVICES, Settings


def settings_or_exit(**overrides: object) -> Settings:
    """The settings from MRM_* variables; a bad one is a usage error naming it."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
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


_INSECURE_WARNING = (
    "mrm: WARNING: authentication is OFF (--insecure / MRM_INSECURE=1): anyone who can reach "
    "these ports can register, deploy and write records, and every record names 'anonymous'. "
    "Use it only in a throwaway sandbox."
)


def _run(
    settings: Settings,
    services: tuple[str, ...],
    *,
    bootstrap: bool = False,
    supervised: bool = False,
) -> None:
    """Start `services`, print where they are, serve until SIGTERM or Ctrl-C.
    `supervised`: a child of `mrm up`, which says what concerns the whole stack."""
    from mrm.stack import Stack

    _logging(settings.log_level)
    # A thread that wakes from a database round trip while holding the ledger's
    # append lock must get the GIL back quickly, or every waiting request's
    # Python work stretches the lock (a convoy). The default is 5 ms.
    sys.setswitchinterval(0.0005)

    async def run() -> None:
        stop = stop_on_signals()
        if settings.insecure and not supervised:
            click.echo(_INSECURE_WARNING, err=True)
        stack = await Stack.start(settings, services, bootstrap=bootstrap)
        for name, server in stack.servers.items():
            if not await server.wait_serving(settings.ready_timeout):
                click.echo(
                    f"mrm: warning: the {name} is not SERVING after {settings.ready_timeout:g} s "
                    "(see the log above); still starting",
                    err=True,
                )
        for name, server in stack.servers.items():
            click.echo(
                f"mrm: {name:<9} {server.address}  (port {server.port}){_ABOUT.get(name, '')}"
            )
        if stack.http_port:
            scheme = "https" if settings.tls_cert_file else "http"
            click.echo(f"mrm: {'reports':<9} {scheme}://{stack.http_addr}/reports/<record id>")
            click.echo(
                f"mrm: {'dashboard':<9} {scheme}://{stack.http_addr}/dashboard "
                "(sign in with an auditor's or the admin token)"
            )
        if not supervised:
            for line in _admin_token_line(settings):
                click.echo(line)
        if stack.local_ledger is not None:
            click.echo(f"mrm: ledger origin {stack.ledger.origin}")
            click.echo(f"mrm: verifier key  {stack.ledger.verifier_key}")
        click.echo(f"mrm: ready ({_storage(settings, services)}); Ctrl-C stops")
        await stop.wait()
        logging.getLogger("mrm").info("signal received; shutting down")
        await stack.stop()

    try:
        asyncio.run(run())
    except MrmError as exc:
        _fail(exc.message, exc)
    except OSError as exc:
        _fail(str(exc) if exc.strerror is None else f"cannot start: {exc}", exc)


def _admin_token_line(settings: Settings) -> list[str]:
    admin_token = settings.token_file("admin")
    if settings.insecure or not admin_token.is_file():
        return []
    return [
        f"mrm: admin token {admin_token} (mrmctl on this machine uses it; "
        "`mrm auth issue` makes others)"
    ]


def _supervise(settings: Settings) -> None:
    """`mrm up` as processes (mrm.supervisor): bootstrap here, then the children."""
    from mrm.supervisor import Supervisor, bootstrap

    _logging(settings.log_level)
    if settings.insecure:
        click.echo(_INSECURE_WARNING, err=True)
    try:
        bootstrap(settings)
    except MrmError as exc:
        _fail(exc.message, exc)
    except OSError as exc:
        _fail(str(exc) if exc.strerror is None else f"cannot start: {exc}", exc)
    ready = f"mrm: ready ({_storage(settings, SERVICES)}); Ctrl-C stops"
    sys.exit(asyncio.run(Supervisor(settings, ready, _admin_token_line(settings)).run()))


_ABOUT = {"proxy": "  Open Inference Protocol v2 over gRPC"}


def _storage(settings: Settings, services: tuple[str, ...]) -> str:
    if not {"ledger", "registry"} & set(services):
        return "no local storage"
    if settings.database_url:
        from sqlalchemy import make_url

        return "database " + make_url(settings.database_url).render_as_string(hide_password=True)
    return f"SQLite in {settings.home.resolve()}"


@main.command()
@click.option(
    "--insecure",
    is_flag=True,
    help="Turn authentication off (a throwaway sandbox only; prints a warning).",
)
@click.option(
    "--single-process",
    is_flag=True,
    help="Run every service in this one process, as before (for debugging).",
)
def up(insecure: bool, single_process: bool) -> None:
    """Run every MRM service locally until SIGTERM or Ctrl-C.

    The services run in three processes that share only their addresses and
    MRM_HOME: the ledger and the registry (the database's writers), explain and
    the monitor (with the HTTP reports and dashboard), and the proxy. A process
    that exits is reported and started again; Ctrl-C stops them all.

    Authentication is on: the first start writes an admin token and one token per
    service into MRM_HOME (mode 0600), which the services and mrmctl on this
    machine pick up.
    """
    settings = settings_or_exit(insecure=True) if insecure else settings_or_exit()
    if single_process:  # one process: the audit shipper is a thread of it, too
        _run(settings.model_copy(update={"proxy_shipper": "thread"}), SERVICES, bootstrap=True)
    else:
        _supervise(settings)


@main.command()
@click.argument("services", nargs=-1, required=True, type=click.Choice(SERVICES))
@click.option("--supervised", is_flag=True, hidden=True, help="Started by `mrm up`.")
def serve(services: tuple[str, ...], supervised: bool) -> None:
    """Run the services named (one container per service in production) in this
    process: each listens on its MRM_*_ADDR and reaches the others at theirs.
    `explain` also serves the HTTP reports."""
    _run(settings_or_exit(), tuple(dict.fromkeys(services)), supervised=supervised)


@main.command()
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def status(output: str) -> None:
    """Health of every service, models in production, the ledger, the proxy's counters."""
    from mrm.stack import client_target
    from mrm.status import gather
    from mrm.status_output import render

    settings = settings_or_exit()
    addresses = {name: client_target(getattr(settings, f"{name}_addr")) for name in SERVICES}
    result = gather(addresses, auth=_operator_auth(settings))
    click.echo(render(result, output))
    sys.exit(0 if result.healthy else 3)


def _operator_auth(settings: Settings) -> ClientAuth:
    """MRM_TOKEN and friends when set, else this machine's admin token."""
    try:
        auth = ClientAuth.from_env()
        if auth.token is None and settings.token_file("admin").is_file():
            auth = ClientAuth.from_env(token_file=settings.token_file("admin"))
    except CredentialsError as exc:
        _fail(str(exc), exc, code=4)
    return auth


@main.command(name="config")
@click.option(
    "--reference", is_flag=True, help="Print every setting as the README's Markdown table."
)
def config_command(reference: bool) -> None:
    """Print the effective settings (from MRM_* variables), passwords hidden."""
    from mrm.config_docs import markdown

    if reference:
        click.echo(markdown(), nl=False)
        return
    settings = settings_or_exit()
    for name, value in settings.model_dump().items():
        if name == "database_url" and value:
            from sqlalchemy import make_url

            value = make_url(value).render_as_string(hide_password=True)
        click.echo(f"MRM_{name.upper()}={'' if value is None else value}")


@main.group(name="db")
def db_group() -> None:
    """Database schema management."""


@db_group.command(name="upgrade")
@click.option("--app-role", help="PostgreSQL role to grant SELECT and INSERT (and nothing more).")
def db_upgrade(app_role: str | None) -> None:
    """Apply every pending migration."""
    settings = settings_or_exit()
    _logging(settings.log_level)
    try:
        db.upgrade(
            db.create_engine(settings.resolved_database_url()),
            app_role=app_role or settings.database_app_role,
        )
    except (MrmError, ValueError) as exc:
        _fail(str(exc), exc)
    click.echo("mrm: database is at the newest schema")


def _fail(message: str, exc: BaseException, code: int = 1) -> NoReturn:
    if os.environ.get("MRM_DEBUG"):
        raise exc
    click.echo(f"mrm: error: {message}", err=True)
    sys.exit(code)


main.add_command(auth_group)

if __name__ == "__main__":  # how `mrm up` starts its children (mrm.supervisor)
    main()
