"""The gRPC side of authentication: one server interceptor, and `caller()` for servicers.

The interceptor verifies every call that needs it before the servicer runs,
checks the caller's roles against the policy table, and makes the principal
available to the servicer (and to the worker threads it starts) through a
context variable. Refusals are domain errors, so the error interceptor around
it turns them into UNAUTHENTICATED or PERMISSION_DENIED with a reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from mrm.core.auth import policy
from mrm.core.auth.authenticator import Authenticator
from mrm.core.auth.principal import Principal, valid_name
from mrm.core.errors import InvalidArgument, PermissionDenied

_CALLER: contextvars.ContextVar[Principal] = contextvars.ContextVar("mrm_caller")
ON_BEHALF_OF = "mrm-on-behalf-of"


def caller() -> Principal:
    """The verified principal of the call being served."""
    return _CALLER.get()


def deployer_of(model_name: str) -> Principal:
    """The caller, if it may change `model_name` (PERMISSION_DENIED otherwise)."""
    who = caller()
    if not who.may_deploy(model_name):
        raise PermissionDenied(
            f"{who.describe()} may not change model {model_name!r}: its deployer role covers "
            f"{', '.join(who.models)}"
        )
    return who


def serving(who: Principal) -> contextvars.Token[Principal]:
    """Make `who` the caller of what runs next in this context (the HTTP pages)."""
    return _CALLER.set(who)


@dataclasses.dataclass(frozen=True)
class Acting:
    """Who a record is by: the caller, or whom a delegate service says it verified."""

    principal: Principal
    on_behalf_of: str = ""

    @property
    def actor(self) -> str:
        return self.on_behalf_of or self.principal.name


_ACTING: contextvars.ContextVar[Acting] = contextvars.ContextVar("mrm_acting")


def acting() -> Acting:
    return _ACTING.get()


def _metadata(details: grpc.HandlerCallDetails, key: str) -> str | None:
    for k, v in details.invocation_metadata or ():
        if k == key:
            return v if isinstance(v, str) else v.decode(errors="replace")
    return None


def _peer_cert(context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    certs = list(context.auth_context().get("x509_pem_cert") or ())
    return bytes(certs[0]) if certs else None


class AuthInterceptor(grpc.aio.ServerInterceptor):
    """Authenticates and authorizes each call by the policy table."""

    def __init__(
        self, authenticator: Authenticator, *, inference_needs_token: bool = False
    ) -> None:
        self.authenticator = authenticator
        self.inference_needs_token = inference_needs_token

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(details)
        if handler is None:
            return None
        roles = policy.required_roles(
            details.method, inference_needs_token=self.inference_needs_token
        )
        if roles is policy.PUBLIC:
            return handler
        authorization = _metadata(details, "authorization")
        delegated = _metadata(details, ON_BEHALF_OF) or ""
        authenticator = self.authenticator
        method = details.method

        async def admit(context: grpc.aio.ServicerContext[Any, Any]) -> tuple[Any, Any]:
            peer = _peer_cert(context)
            if authenticator.is_slow(authorization):
                who = await asyncio.to_thread(authenticator.authenticate, authorization, peer)
            else:
                who = authenticator.authenticate(authorization, peer)
            if roles is None:
                raise PermissionDenied(f"{method} is not open to any caller")
            if not who.has(*roles):
                raise PermissionDenied(
                    f"{who.describe()} may not call {method.rsplit('/', 1)[1]}: it needs one of "
                    f"the roles {', '.join(sorted(roles))}"
                )
            if delegated and not who.has(*policy.DELEGATES):
                raise PermissionDenied(
                    f"{who.describe()} may not act on behalf of another principal "
                    f"({ON_BEHALF_OF} is for the registry and Explain services)"
                )
            if delegated and not valid_name(delegated):
                raise InvalidArgument(ON_BEHALF_OF, f"{delegated[:40]!r} is not a principal name")
            return _CALLER.set(who), _ACTING.set(Acting(who, delegated))

        def reset(tokens: tuple[Any, Any]) -> None:
            # Each call runs in its own task, so nothing leaks if a stream is
            # finalized from another context and the reset cannot happen.
            with contextlib.suppress(ValueError):
                _CALLER.reset(tokens[0])
                _ACTING.reset(tokens[1])

        def single(inner: Any) -> Any:
            async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                tokens = await admit(context)
                try:
                    return await inner(request, context)
                finally:
                    reset(tokens)

            return run

        def streamed(inner: Any) -> Any:
            async def run(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                tokens = await admit(context)
                try:
                    async for item in inner(request, context):
                        yield item
                finally:
                    reset(tokens)

            return run

        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(single(handler.unary_unary), **kw)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(single(handler.stream_unary), **kw)
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(streamed(handler.unary_stream), **kw)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(streamed(handler.stream_stream), **kw)
        return handler
