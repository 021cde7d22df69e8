"""`mrm auth`: credentials of an installation, each issue and revocation a ledger record.

    mrm auth init                      # the tokens file and the local tokens (k8s: then
                                       # make Secrets of them; `mrm up` does it itself)
    mrm auth issue --principal devin@example.com --role deployer --model 'credit-*'
    mrm auth revoke tok_0123456789ab   # or every live token of a principal
    mrm auth list

They edit the tokens file the servers read (MRM_AUTH_TOKENS_FILE), so they run
where it is, and talk to the ledger as an admin (MRM_TOKEN, else the local admin
token) to record what they did.
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import click

from mrm.client.auth import AuthClient
from mrm.client.credentials import ClientAuth, CredentialsError
from mrm.client.errors import MrmRpcError, Unavailable
from mrm.client.ledger import LedgerClient
from mrm.core.auth import bootstrap, tokens
from mrm.core.auth.access import access_record
from mrm.core.auth.principal import ROLES
from mrm.core.settings import Settings

_DURATION = re.compile(r"(\d+)([dhm])")
_UNIT_SECONDS = {"d": 86_400, "h": 3600, "m": 60}


def _settings() -> Settings:
    from mrm.admin import settings_or_exit

    return settings_or_exit()


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"mrm: error: {message}", err=True)
    sys.exit(code)


def _admin(settings: Settings) -> tuple[ClientAuth, str]:
    """The admin credential to record with, and where the ledger is."""
    from mrm.stack import client_target

    try:
        auth = ClientAuth.from_env()
        if auth.token is None and settings.token_file("admin").is_file():
            auth = ClientAuth.from_env(token_file=settings.token_file("admin"))
    except CredentialsError as exc:
        _fail(str(exc), 4)
    return auth, client_target(settings.ledger_addr)


@click.group(name="auth")
def auth_group() -> None:
    """Tokens: issue, revoke, list (each recorded in the ledger)."""


@auth_group.command(name="init")
def init() -> None:
    """Create the tokens file and the local tokens (admin, registry, explain, proxy,
    monitor, dashboard); only what is missing or no longer live is issued."""
    settings = _settings()
    try:
        written = bootstrap.ensure_local_tokens(settings)
    except (OSError, ValueError) as exc:
        _fail(str(exc))
    for name in written:
        click.echo(f"mrm: {name} token written to {settings.token_file(name)} (mode 0600)")
    if not written:
        click.echo("mrm: every local token is in place")
    click.echo(f"mrm: tokens file {settings.resolved_tokens_file()}")


def _expiry(expires_in: str | None) -> int:
    if not expires_in:
        return 0
    match = _DURATION.fullmatch(expires_in.strip())
    if match is None or int(match[1]) == 0:
        raise click.BadParameter("want a number and d, h or m, e.g. 90d", param_hint="--expires-in")
    return time.time_ns() // 1000 + int(match[1]) * _UNIT_SECONDS[match[2]] * 1_000_000


@auth_group.command()
@click.option("--principal", required=True, help="Who the token is for, e.g. devin@example.com.")
@click.option(
    "--role", "roles", multiple=True, required=True, type=click.Choice(ROLES), help="Repeatable."
)
@click.option(
    "--model", "models", multiple=True, help="Model-name glob a deployer may change (repeatable)."
)
@click.option("--expires-in", help="Lifetime, e.g. 90d, 12h (default: until revoked).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def issue(
    principal: str,
    roles: tuple[str, ...],
    models: tuple[str, ...],
    expires_in: str | None,
    output: str,
) -> None:
    """Issue a token; it is printed once, on stdout, and stored only as its SHA-256.

    The issuance is recorded in the ledger (an ACCESS record) before the token works:
    with the ledger unreachable, nothing is issued.
    """
    settings = _settings()
    expires_at = _expiry(expires_in)
    auth, ledger_addr = _admin(settings)
    path = settings.resolved_tokens_file()
    try:
        with AuthClient(ledger_addr, auth=auth) as who_client:
            me = who_client.whoami().principal
        with tokens.editing(path) as entries:
            token, entry = tokens.issue(
                entries,
                principal,
                roles,
                models=models or ("*",),
                issued_by=me,
                expires_at_us=expires_at,
            )
            with LedgerClient(ledger_addr, auth=auth) as ledger:
                (result,) = ledger.append([access_record(entry, "issued")])
    except ValueError as exc:
        _fail(str(exc), 2)
    except Unavailable as exc:
        _fail(f"cannot reach the ledger at {ledger_addr} ({exc.summary()}); nothing was issued", 3)
    except MrmRpcError as exc:
        _fail(f"the ledger refused to record the issuance ({exc.summary()}); nothing was issued")
    doc = {
        "token": token,
        "token_id": entry.id,
        "principal": principal,
        "roles": list(entry.roles),
        "models": list(entry.models),
        "expires_at": entry.expires_at,
        "record_id": result.record_id,
        "leaf_index": result.leaf_index,
    }
    if output == "json":
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(token)
    click.echo(
        f"mrm: issued {entry.id} to {principal} ({', '.join(entry.roles)}); recorded as "
        f"{result.record_id} (leaf {result.leaf_index}). The token is shown only now: "
        "hand it over as a secret (MRM_TOKEN).",
        err=True,
    )


@auth_group.command()
@click.argument("token_or_principal")
def revoke(token_or_principal: str) -> None:
    """Revoke a token (by its id, tok_…) or every live token of a principal.

    It stops working within a second, then the revocation is recorded in the
    ledger; if the ledger is down, the ledger records it when it next reads the
    tokens file.
    """
    settings = _settings()
    auth, ledger_addr = _admin(settings)
    me = "mrm auth revoke"
    try:
        with AuthClient(ledger_addr, auth=auth, timeout=5) as who_client:
            me = who_client.whoami().principal
    except MrmRpcError:
        pass  # revoke anyway: a revocation must not wait on the ledger
    try:
        with tokens.editing(settings.resolved_tokens_file()) as entries:
            done = tokens.revoke(entries, token_or_principal, revoked_by=me)
    except ValueError as exc:
        _fail(str(exc), 2)
    for entry in done:
        click.echo(f"mrm: revoked {entry.id} ({entry.principal})")
    try:
        with LedgerClient(ledger_addr, auth=auth, timeout=10) as ledger:
            ledger.append([access_record(entry, "revoked") for entry in done])
    except MrmRpcError as exc:
        click.echo(
            f"mrm: warning: the revocation works, but recording it failed ({exc.summary()}); "
            "the ledger records it when it next reads the tokens file",
            err=True,
        )


@auth_group.command(name="list")
@click.option("--output", type=click.Choice(["text", "json"]), default="text")
def list_tokens(output: str) -> None:
    """Every token in the tokens file (ids, never the tokens)."""
    settings = _settings()
    path = settings.resolved_tokens_file()
    try:
        entries = tokens.read_file(path)
    except FileNotFoundError:
        _fail(f"no tokens file at {path} (run `mrm auth init` or `mrm up`)", 2)
    except ValueError as exc:
        _fail(str(exc))
    docs: list[dict[str, Any]] = [
        {k: v for k, v in e.to_json().items() if k != "sha256"} for e in entries
    ]
    if output == "json":
        click.echo(json.dumps(docs, indent=2))
        return
    for d in docs:
        state = f"revoked {d['revoked_at']}" if d["revoked_at"] else "live"
        if not d["revoked_at"] and d["expires_at"]:
            state = f"expires {d['expires_at']}"
        click.echo(
            f"{d['id']}  {d['principal']:<28} {','.join(d['roles']):<18} "
            f"models {','.join(d['models'])}  {state}"
        )
