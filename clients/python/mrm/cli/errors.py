"""Exit codes and the one-line error report every mrmctl failure goes through.

ARCHITECTURE.md fixes the codes scripts rely on: 0 success, 1 a check failed,
2 usage or input error, 3 a service is unreachable.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from mrm.client.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    MrmRpcError,
    NotFound,
    PermissionDenied,
)
from mrm.client.trust import TrustConfigError, TrustError
from mrm.deploy.errors import DeployError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


class CliError(Exception):
    """A failure to report as one line (plus optional detail lines) and an exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE, details: str = "") -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.details = details


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _rpc_exit_code(e: MrmRpcError) -> int:
    # The request was wrong or not allowed: the user can fix it. Anything else
    # (down, timed out, failed on its side) is the service's problem.
    if isinstance(e, InvalidArgument | NotFound | AlreadyExists | FailedPrecondition):
        return EXIT_USAGE
    if isinstance(e, PermissionDenied):
        return EXIT_USAGE
    if isinstance(e, DataLoss):  # the ledger found evidence of tampering: a failed check
        return EXIT_CHECK_FAILED
    return EXIT_UNAVAILABLE


def report(e: BaseException) -> int:
    """Print `e` for a person (one line on stderr, no traceback) and return the exit code."""
    details = ""
    if isinstance(e, CliError):
        code, message, details = e.exit_code, str(e), e.details
    elif isinstance(e, click.ClickException):
        code, message = e.exit_code, e.format_message()
        ctx = getattr(e, "ctx", None)
        if isinstance(e, click.UsageError) and ctx is not None:
            message = message.rstrip(".") + f" (see '{ctx.command_path} --help')"
    elif isinstance(e, DeployError):
        code, message = e.exit_code, str(e)
    elif isinstance(e, TrustError):
        code, message, details = EXIT_CHECK_FAILED, str(e), e.details
    elif isinstance(e, TrustConfigError):
        code, message = EXIT_USAGE, str(e)
    elif isinstance(e, MrmRpcError):
        code, message = _rpc_exit_code(e), e.summary()
    elif isinstance(e, KeyboardInterrupt):
        code, message = 130, "interrupted"
    else:
        code = EXIT_CHECK_FAILED
        message = f"unexpected {type(e).__name__}: {e}"
        if os.environ.get("MRM_DEBUG"):
            traceback.print_exception(e, file=sys.stderr)
        else:
            message += " (this is a bug in mrmctl; rerun with MRM_DEBUG=1 for the traceback)"
    print(f"mrmctl: error: {_one_line(message)}", file=sys.stderr)
    if details:
        print(details.rstrip("\n"), file=sys.stderr)
    return code
