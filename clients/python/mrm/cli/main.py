"""The `mrmctl` command: MRM's interface for CI, operators and auditors.

Every failure ends in exactly one line on stderr and one of the exit codes in
mrm.cli.errors; a traceback is printed only with MRM_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import click

from mrm.cli import auth, models, records, verify
from mrm.cli import monitor as monitor_cli
from mrm.cli.deploy import deploy
from mrm.cli.errors import EXIT_CHECK_FAILED, report
from mrm.cli.evidence import evidence
from mrm.cli.ledger import ledger
from mrm.cli.outcomes import outcomes
from mrm.cli.predictions import predictions
from mrm.cli.session import Settings
from mrm.cli.why import why
from mrm.client.credentials import ClientTls

# These modules add their commands to `ledger` when imported.
_COMMAND_MODULES = (records, verify)


class MrmctlGroup(click.Group):
    """A root group that turns every error into one line and an exit code.

    Overriding `main` (rather than wrapping it in `main()` below) keeps the
    behaviour identical under click's CliRunner, which calls this method.
    """

    def main(  # type: ignore[override]
        self,
        args: list[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            rv = super().main(args, prog_name or "mrmctl", complete_var, False, **extra)
            code = rv if isinstance(rv, int) else 0
        except click.exceptions.Exit as e:
            code = e.exit_code
        except click.Abort:
            code = report(KeyboardInterrupt())
        except BrokenPipeError:
            # The reader (`| head`) went away. Point stdout at /dev/null so the
            # interpreter's final flush does not complain about it on stderr.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            code = EXIT_CHECK_FAILED
        except (Exception, KeyboardInterrupt) as e:
            code = report(e)
        if standalone_mode:
            sys.exit(code)
        return code


@click.group(cls=MrmctlGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--ledger-addr",
    envvar="MRM_LEDGER_ADDR",
    default="localhost:50052",
    show_default=True,
    help="The ledger's gRPC address (env MRM_LEDGER_ADDR).",
)
@click.option(
    "--registry-addr",
    envvar="MRM_REGISTRY_ADDR",
    default="localhost:50051",
    show_default=True,
    help="The registry's gRPC address (env MRM_REGISTRY_ADDR).",
)
@click.option(
    "--monitor-addr",
    envvar="MRM_MONITOR_ADDR",
    default="localhost:50054",
    show_default=True,
    help="The monitor's gRPC address (env MRM_MONITOR_ADDR).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each call.",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A file holding the token to present (else MRM_TOKEN, a CI id-token, …).",
)
@click.option(
    "--tls-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="MRM_TLS_CA_FILE",
    help="Use TLS, trusting this CA (env MRM_TLS_CA_FILE).",
)
@click.option(
    "--tls-cert",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="MRM_TLS_CLIENT_CERT_FILE",
    help="Client certificate for mTLS (env MRM_TLS_CLIENT_CERT_FILE).",
)
@click.option(
    "--tls-key",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="MRM_TLS_CLIENT_KEY_FILE",
    help="Its private key (env MRM_TLS_CLIENT_KEY_FILE).",
)
@click.version_option(package_name="mrm", prog_name="mrmctl")
@click.pass_context
def mrmctl(
    ctx: click.Context,
    ledger_addr: str,
    registry_addr: str,
    monitor_addr: str,
    timeout: float,
    token_file: Path | None,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
) -> None:
    """MRM: a tamper-evident audit trail for machine-learning models.

    Credentials, first found wins: --token-file; a CI job's OIDC id-token
    (MRM_OIDC_TOKEN, or GitHub Actions with `id-token: write`); MRM_TOKEN;
    MRM_TOKEN_FILE; the file `mrmctl login` writes; the local `mrm up`'s admin
    token (MRM_HOME/admin.token).

    Exit codes: 0 success, 1 a check failed, 2 usage or input error,
    3 a service is unreachable, 4 not authenticated, 5 not allowed.
    """
    tls = ClientTls(tls_ca, tls_cert, tls_key) if (tls_ca or tls_cert or tls_key) else None
    ctx.obj = Settings(
        ledger_addr=ledger_addr,
        timeout=timeout,
        registry_addr=registry_addr,
        monitor_addr=monitor_addr,
        token_file=token_file,
        tls=tls,
    )


mrmctl.add_command(ledger)
for command in (
    models.models,
    models.promote,
    models.rollback,
    deploy,
    why,
    predictions,
    auth.whoami,
    auth.login,
    monitor_cli.drift,
    monitor_cli.alerts,
    outcomes,
    evidence,
):
    mrmctl.add_command(command)


def main() -> None:
    mrmctl.main(prog_name="mrmctl")
