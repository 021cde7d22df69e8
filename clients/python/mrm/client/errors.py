"""Typed exceptions for the gRPC statuses MRM services answer with.

The class is chosen from the status code alone; nothing the server sends ever
names a Python class (a server must not be able to make the client import or
construct arbitrary types). Field violations come from a google.rpc.BadRequest
detail, when the server attached one.
"""

from __future__ import annotations

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


class MrmRpcError(Exception):
    """A call to an MRM service failed with a gRPC status."""

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        field_violations: list[tuple[str, str]] | None = None,
        info: dict[str, str] | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.field_violations: list[tuple[str, str]] = list(field_violations or [])
        self.info: dict[str, str] = dict(info or {})
        """google.rpc.ErrorInfo metadata, e.g. the leaf a DATA_LOSS error is about, and
        its reason under "reason"."""
        super().__init__(self.summary())

    def summary(self) -> str:
        """One line: the violated fields when the server named them, else its message."""
        if self.field_violations:
            return "; ".join(f"{f}: {d}" if f else d for f, d in self.field_violations)
        return self.message or self.code.name.lower().replace("_", " ")


class InvalidArgument(MrmRpcError):
    """The request was malformed (INVALID_ARGUMENT, OUT_OF_RANGE)."""


class NotFound(MrmRpcError):
    """The thing asked for does not exist (NOT_FOUND)."""


class AlreadyExists(MrmRpcError):
    """A record id was replayed with different content (ALREADY_EXISTS)."""


class FailedPrecondition(MrmRpcError):
    """The service is not in a state to answer yet (FAILED_PRECONDITION)."""


class Unavailable(MrmRpcError):
    """The service could not be reached or did not answer in time."""


class PermissionDenied(MrmRpcError):
    """The caller is verified but its roles do not allow this (PERMISSION_DENIED)."""


class Unauthenticated(MrmRpcError):
    """The server accepted no credential of the call (UNAUTHENTICATED).

    `reason` says which case: CREDENTIALS_MISSING, TOKEN_MALFORMED,
    TOKEN_UNKNOWN, TOKEN_EXPIRED, TOKEN_REVOKED or ID_TOKEN_INVALID ("" when
    the server did not say).
    """

    @property
    def reason(self) -> str:
        return self.info.get("reason", "")


class InternalError(MrmRpcError):
    """The service failed on its side (INTERNAL, UNKNOWN, UNIMPLEMENTED)."""


class DataLoss(MrmRpcError):
    """The ledger found its stored log damaged (DATA_LOSS): evidence of tampering.

    `info` names the leaf ("leaf_index", "record_id") when the ledger knows it.
    """


_BY_CODE: dict[grpc.StatusCode, type[MrmRpcError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgument,
    grpc.StatusCode.OUT_OF_RANGE: InvalidArgument,
    grpc.StatusCode.NOT_FOUND: NotFound,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExists,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    grpc.StatusCode.UNAVAILABLE: Unavailable,
    grpc.StatusCode.DEADLINE_EXCEEDED: Unavailable,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDenied,
    grpc.StatusCode.UNAUTHENTICATED: Unauthenticated,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: DataLoss,
    grpc.StatusCode.UNIMPLEMENTED: InternalError,
}


def _details(call: grpc.Call) -> tuple[list[tuple[str, str]], dict[str, str]]:
    """BadRequest field violations and ErrorInfo metadata from a rich status."""
    try:
        status = rpc_status.from_call(call)
    except ValueError:
        # The rich status disagrees with the call's own code or message: keep
        # the plain status rather than trust half of it.
        return [], {}
    if status is None:
        return [], {}
    violations: list[tuple[str, str]] = []
    info: dict[str, str] = {}
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            if detail.Unpack(bad):
                violations.extend((v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            error_info = error_details_pb2.ErrorInfo()
            if detail.Unpack(error_info):
                info.update(error_info.metadata)
                if error_info.reason:
                    info["reason"] = error_info.reason
    return violations, info


def from_rpc_error(error: grpc.RpcError) -> MrmRpcError:
    """The typed exception for a failed call of the synchronous gRPC API."""
    if not isinstance(error, grpc.Call):
        # Not a completed call (for example a channel that never connected in
        # a custom transport): all we know is that the service did not answer.
        return Unavailable(grpc.StatusCode.UNAVAILABLE, str(error) or "service unavailable")
    code = error.code()
    message = error.details() or ""
    cls = _BY_CODE.get(code, MrmRpcError)
    violations, info = _details(error)
    return cls(code, message, violations, info)
