"""One mrmctl invocation's connection to the ledger, with the trust check built in."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import click

from mrm.cli.errors import EXIT_UNAVAILABLE, CliError
from mrm.cli.output import rfc3339
from mrm.client.credentials import ClientAuth, ClientTls
from mrm.client.errors import Unavailable
from mrm.client.ledger import LedgerClient
from mrm.client.monitor import MonitorClient
from mrm.client.registry import RegistryClient
from mrm.client.trust import TrustedCheckpoint, TrustStore


@dataclass(frozen=True)
class Settings:
    """The global options, parsed once by the root command."""

    ledger_addr: str
    timeout: float
    registry_addr: str = "localhost:50051"
    monitor_addr: str = "localhost:50054"
    token_file: Path | None = None
    tls: ClientTls | None = None
    _auth: list[ClientAuth] = field(default_factory=list, compare=False, repr=False)

    def client_auth(self) -> ClientAuth:
        """The credential every call of this invocation presents, found once on first
        use (a CI job's id-token is requested then, not for --help)."""
        if not self._auth:
            self._auth.append(ClientAuth.from_env(token_file=self.token_file, tls=self.tls))
        return self._auth[0]


def settings_of(ctx: click.Context) -> Settings:
    """The root command's settings (defaults when a subcommand runs on its own)."""
    return ctx.find_object(Settings) or Settings("localhost:50052", 30.0)


class LedgerSession:
    def __init__(self, client: LedgerClient, trust: TrustStore) -> None:
        self.client = client
        self.trust = trust
        self.signed_at = ""  # of the checkpoint `trusted` accepted, RFC 3339

    def _consistency_path(self, old_size: int, new_size: int) -> Sequence[bytes]:
        return self.client.consistency_proof(old_size, new_size).consistency_path

    def trusted(self, *, refresh: bool = False) -> TrustedCheckpoint:
        """The server's latest checkpoint, accepted only if it extends what we saw before.

        Every command that talks to the ledger calls this first, so a rolled
        back or forked log is noticed on the next call of any kind.
        """
        cp = self.client.checkpoint(refresh=refresh)
        trusted = self.trust.check(cp, self._consistency_path)
        self.signed_at = rfc3339(cp.signed_at)
        return trusted


@contextlib.contextmanager
def _reachable(what: str, addr: str, flag: str, variable: str) -> Iterator[None]:
    """An unreachable service becomes exit 3 with a hint where to point the CLI."""
    try:
        yield
    except Unavailable as e:
        raise CliError(
            f"cannot reach the {what} at {addr}: {e.summary()} "
            f"(is it running? point {flag} or {variable} at it)",
            EXIT_UNAVAILABLE,
        ) from None


@contextlib.contextmanager
def ledger_session(ctx: click.Context) -> Iterator[LedgerSession]:
    settings = settings_of(ctx)
    trust = TrustStore.from_env(announce=lambda line: click.echo(line, err=True))
    client = LedgerClient(
        settings.ledger_addr, timeout=settings.timeout, auth=settings.client_auth()
    )
    try:
        with _reachable("ledger", settings.ledger_addr, "--ledger-addr", "MRM_LEDGER_ADDR"):
            yield LedgerSession(client, trust)
    finally:
        client.close()


@contextlib.contextmanager
def registry_session(ctx: click.Context) -> Iterator[RegistryClient]:
    """A registry client; an unreachable registry is exit 3 with a hint."""
    settings = settings_of(ctx)
    client = RegistryClient(
        settings.registry_addr, timeout=settings.timeout, auth=settings.client_auth()
    )
    try:
        with _reachable("registry", settings.registry_addr, "--registry-addr", "MRM_REGISTRY_ADDR"):
            yield client
    finally:
        client.close()


@contextlib.contextmanager
def monitor_session(ctx: click.Context) -> Iterator[MonitorClient]:
    """A monitor client (MonitorService and OutcomeService); unreachable is exit 3."""
    settings = settings_of(ctx)
    client = MonitorClient(
        settings.monitor_addr, timeout=settings.timeout, auth=settings.client_auth()
    )
    try:
        with _reachable("monitor", settings.monitor_addr, "--monitor-addr", "MRM_MONITOR_ADDR"):
            yield client
    finally:
        client.close()
