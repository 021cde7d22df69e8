"""`mrmctl whoami` and `mrmctl login`: which identity the servers see for you.

mrmctl whoami                 # the principal, roles and verified claims
mrmctl login < token.txt      # check a token, then keep it (0600) for later calls
"""

from __future__ import annotations

import os
import sys

import click

from mrm.cli.errors import EXIT_OK, CliError
from mrm.cli.identity import identity_json
from mrm.cli.output import console, emit_json, output_option
from mrm.cli.session import settings_of
from mrm.client.auth import AuthClient
from mrm.client.configdir import write_atomic
from mrm.client.credentials import ClientAuth, credentials_file
from mrm.client.errors import Unavailable
from mrm.v1 import auth_pb2


def _whoami(ctx: click.Context, auth: ClientAuth) -> auth_pb2.Identity:
    settings = settings_of(ctx)
    try:
        with AuthClient(settings.registry_addr, timeout=settings.timeout, auth=auth) as client:
            return client.whoami()
    except Unavailable as e:
        raise CliError(
            f"cannot reach the registry at {settings.registry_addr}: {e.summary()} "
            "(point --registry-addr or MRM_REGISTRY_ADDR at it)",
            3,
        ) from None


@click.command()
@output_option
@click.pass_context
def whoami(ctx: click.Context, output: str) -> int:
    """The identity the servers verify for your credential (asks the registry)."""
    doc = identity_json(_whoami(ctx, settings_of(ctx).client_auth()))
    if output == "json":
        emit_json(doc)
        return EXIT_OK
    out = console()
    out.print(f"{doc['principal']} ({doc['method']}; roles {', '.join(doc['roles'])})")
    if doc["models"] != ["*"]:
        out.print(f"  may deploy: {', '.join(doc['models'])}")
    for key, value in dict(doc["verified_claims"]).items():
        out.print(f"  verified {key}: {value}")
    if doc["expires_at"]:
        out.print(f"  expires {doc['expires_at']}")
    return EXIT_OK


@click.command()
@click.pass_context
def login(ctx: click.Context) -> int:
    """Read a token on stdin (or at a hidden prompt), check it, and keep it in
    $MRM_CONFIG_DIR/credentials (mode 0600) for later calls."""
    settings = settings_of(ctx)
    if sys.stdin.isatty():
        token = click.prompt("MRM token", hide_input=True).strip()
    else:
        token = sys.stdin.readline().strip()
    if not token:
        raise CliError("no token given on stdin")
    identity = _whoami(ctx, ClientAuth(token, settings.tls, "the token given to login"))
    path = credentials_file(os.environ)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_atomic(path, token + "\n")
    click.echo(f"mrmctl: signed in as {identity.principal}; the token is kept in {path}", err=True)
    return EXIT_OK
