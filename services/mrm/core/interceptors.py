"""The one place where domain errors become gRPC statuses."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mrm.core.errors import (
    IntegrityError,
    InvalidArgument,
    InvalidArguments,
    MrmError,
    Unauthenticated,
)

log = logging.getLogger(__name__)


def to_status(exc: MrmError) -> grpc.Status:
    """A rich status: code, message and, for a bad field, a google.rpc.BadRequest."""
    details: list[any_pb2.Any] = []
    if isinstance(exc, InvalidArgument):
        pairs = (
            exc.violations if isinstance(exc, InvalidArguments) else [(exc.field, exc.description)]
        )
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in pairs
                ]
            )
        )
        details.append(detail)
    if isinstance(exc, IntegrityError) and exc.leaf_index is not None:
        detail = any_pb2.Any()
        detail.Pack(
            error_details_pb2.ErrorInfo(
                reason="LEDGER_INTEGRITY",
                domain="mrm.dev",
                metadata={"leaf_index": str(exc.leaf_index), "record_id": exc.record_id},
            )
        )
        details.append(detail)
    if isinstance(exc, Unauthenticated):
        detail = any_pb2.Any()
        detail.Pack(error_details_pb2.ErrorInfo(reason=exc.reason, domain="mrm.dev"))
        details.append(detail)
    proto = status_pb2.Status(code=exc.code.value[0], message=exc.message, details=details)
    status: grpc.Status = rpc_status.to_status(proto)
    return status


def _internal(method: str, exc: BaseException) -> grpc.Status:
    ref = uuid.uuid4().hex[:12]
    log.error("unexpected error in %s (ref %s)", method, ref, exc_info=exc)
    status: grpc.Status = rpc_status.to_status(
        status_pb2.Status(code=code_pb2.INTERNAL, message=f"internal error (ref {ref})")
    )
    return status


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps MrmError to its status; anything else to INTERNAL with the details logged."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        method = handler_call_details.method

        async def mapped(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> None:
            if isinstance(exc, grpc.aio.AbortError | grpc.aio.BaseError):
                raise exc
            status = to_status(exc) if isinstance(exc, MrmError) else _internal(method, exc)
            await context.abort_with_status(status)

        def single(inner: Any) -> Any:  # one response: unary-unary and stream-unary
            async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    _check_decoded(request)
                    return await inner(request, context)
                except Exception as exc:
                    await mapped(context, exc)

            return run

        def streamed(inner: Any) -> Any:  # a response stream: unary-stream and stream-stream
            async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                try:
                    _check_decoded(request)
                    async for item in inner(request, context):
                        yield item
                except Exception as exc:
                    await mapped(context, exc)

            return run

        kw = {"response_serializer": handler.response_serializer}
        lenient = {**kw, "request_deserializer": _lenient(handler.request_deserializer)}
        strict = {**kw, "request_deserializer": handler.request_deserializer}
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(single(handler.unary_unary), **lenient)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(single(handler.stream_unary), **strict)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streamed(handler.unary_stream), **lenient)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(streamed(handler.stream_stream), **strict)
        return handler


class _Undecodable:
    """Stands for a request whose bytes are not the message they should be."""

    def __init__(self, error: Exception) -> None:
        self.error = error


def _lenient(deserialize: Any) -> Any:
    """Garbage bytes become INVALID_ARGUMENT from the handler, not gRPC's INTERNAL."""
    if deserialize is None:
        return None

    def run(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, and friends
            return _Undecodable(exc)

    return run


def _check_decoded(request: Any) -> None:
    if isinstance(request, _Undecodable):
        raise InvalidArgument("request", f"is not a valid protobuf message ({request.error})")
