"""Exit codes and the one-line error report every mrmctl failure goes through.

ARCHITECTURE.md fixes the codes scripts rely on: 0 success, 1 a check failed,
2 usage or input error, 3 a service is unreachable; authentication adds 4, the
server accepted no credential (missing, malformed, wrong, expired, revoked: the
line says which), and 5, the credential is valid but its roles do not allow it.
"""

from __future__ import annotations

import os
import sys
import traceback

import click

from mrm.client.credentials import CredentialsError
from mrm.client.errors import (
    AlreadyExists,
    DataLoss,
    FailedPrecondition,
    InvalidArgument,
    MrmRpcError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from mrm.client.trust import TrustConfigError, TrustError
from mrm.deploy.errors import DeployError

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_UNAUTHENTICATED = 4
EXIT_FORBIDDEN = 5

_REMEDY = {
    "CREDENTIALS_MISSING": "set MRM_TOKEN (or MRM_TOKEN_FILE, --token-file) to a token "
    "from `mrm auth issue`",
    "TOKEN_UNKNOWN": "check that it is this installation's token, copied whole",
}


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
    if isinstance(e, Unauthenticated):
        return EXIT_UNAUTHENTICATED
    if isinstance(e, PermissionDenied):
        return EXIT_FORBIDDEN
    if isinstance(e, DataLoss):  # the ledger found evidence of tampering: a failed check
        return EXIT_CHECK_FAILED
    return EXIT_UNAVAILABLE


def _credential_source() -> str:
    ctx = click.get_current_context(silent=True)
    settings = getattr(ctx, "obj", None) if ctx is not None else None
    auth = getattr(settings, "_auth", None)
    return auth[0].source if auth else ""


def _unauthenticated(e: Unauthenticated) -> str:
    """Which credential failed and why, in one line (the server said why)."""
    source = _credential_source()
    used = f" (credential from {source})" if source and source != "no credentials" else ""
    remedy = _REMEDY.get(e.reason, "")
    return f"not authenticated: {e.summary()}{used}" + (f"; {remedy}" if remedy else "")


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
    elif isinstance(e, CredentialsError):
        code, message = EXIT_UNAUTHENTICATED, str(e)
    elif isinstance(e, Unauthenticated):
        code, message = EXIT_UNAUTHENTICATED, _unauthenticated(e)
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
