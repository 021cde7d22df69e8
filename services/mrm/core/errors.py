"""Domain errors. Each carries its gRPC status code; one interceptor maps them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import grpc


class MrmError(Exception):
    """Base of every error a caller is meant to see."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(MrmError):
    """A request field is wrong. Names the field and what was expected."""

    code = grpc.StatusCode.INVALID_ARGUMENT

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


class InvalidArguments(InvalidArgument):
    """Several request fields are wrong at once: one google.rpc.BadRequest field
    violation each, `message` summing them up. `violations` is never empty."""

    def __init__(self, message: str, violations: Sequence[tuple[str, str]]) -> None:
        super().__init__(*violations[0])
        self.message = message
        self.args = (message,)
        self.violations = list(violations)


T = TypeVar("T")


def parse_field(field: str, parse: Callable[[str], T], value: str) -> T:
    """`parse(value)`, its ValueError an InvalidArgument on `field`: for the shared
    kernel's parsers (mrm.kernel), which know no status codes."""
    try:
        return parse(value)
    except ValueError as e:
        raise InvalidArgument(field, str(e)) from None


class NotFound(MrmError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(MrmError):
    code = grpc.StatusCode.ALREADY_EXISTS


class FailedPrecondition(MrmError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Unavailable(MrmError):
    code = grpc.StatusCode.UNAVAILABLE


class IntegrityError(MrmError):
    """The stored log contradicts itself or a signed checkpoint: evidence of tampering.

    Names the first leaf concerned when there is one, so an auditor's tool can
    point at it (sent as google.rpc.ErrorInfo metadata).
    """

    code = grpc.StatusCode.DATA_LOSS

    def __init__(self, message: str, *, leaf_index: int | None = None, record_id: str = "") -> None:
        super().__init__(message)
        self.leaf_index = leaf_index
        self.record_id = record_id


class Unauthenticated(MrmError):
    """The call carries no credential the server accepts. `reason` says which case
    (CREDENTIALS_MISSING, TOKEN_MALFORMED, TOKEN_UNKNOWN, TOKEN_EXPIRED,
    TOKEN_REVOKED, ID_TOKEN_INVALID); it goes out as google.rpc.ErrorInfo."""

    code = grpc.StatusCode.UNAUTHENTICATED

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class PermissionDenied(MrmError):
    """A verified caller whose roles do not allow the call."""

    code = grpc.StatusCode.PERMISSION_DENIED
