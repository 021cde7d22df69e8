"""The `mrmctl` command: MRM's interface for CI, operators and auditors.

Every failure ends in exactly one line on stderr and one of the exit codes in
mrm.cli.errors; a traceback is printed only with MRM_DEBUG=1.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from mrm.cli import models, records, verify
from mrm.cli.deploy import deploy
from mrm.cli.errors import EXIT_CHECK_FAILED, report
from mrm.cli.ledger import ledger
from mrm.cli.predictions import predictions
from mrm.cli.session import Settings
from mrm.cli.why import why

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
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    show_default=True,
    help="Seconds to wait for each call.",
)
@click.version_option(package_name="mrm", prog_name="mrmctl")
@click.pass_context
def mrmctl(ctx: click.Context, ledger_addr: str, registry_addr: str, timeout: float) -> None:
    """MRM: a tamper-evident audit trail for machine-learning models.

    Exit codes: 0 success, 1 a check failed, 2 usage or input error,
    3 a service is unreachable.
    """
    ctx.obj = Settings(ledger_addr=ledger_addr, timeout=timeout, registry_addr=registry_addr)


mrmctl.add_command(ledger)
for command in (models.models, models.promote, models.rollback, deploy, why, predictions):
    mrmctl.add_command(command)


def main() -> None:
    mrmctl.main(prog_name="mrmctl")
