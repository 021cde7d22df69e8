"""What every MRM service client shares: one channel, credentials, a timeout, typed errors."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Self, TypeVar

import grpc

from mrm.client.credentials import ClientAuth
from mrm.client.errors import from_rpc_error

_Resp = TypeVar("_Resp")
# A full audit pages 10,000 records at a time; gRPC's default 4 MiB receive cap
# would fail on prediction-sized records long before that.
# Each client gets its own subchannels: by default gRPC shares them per process,
# so a new client would inherit another's reconnect backoff and fail at once,
# with a stale "connection refused", after the server came back. Reconnects are
# capped at 5 s (gRPC's default grows to 120 s), so services that hold a client
# for their lifetime (the registry's and the proxy's ledger clients) recover
# within seconds of an outage ending.
_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", -1),
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5000),
]


class _CallDetails(NamedTuple):
    method: str
    timeout: float | None
    metadata: Sequence[tuple[str, str]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


class _Credentials(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds the credential's metadata to every call, whatever stub method makes it."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def _details(self, details: Any) -> _CallDetails:
        given = tuple(details.metadata or ())
        ours = {k for k, _ in self._metadata}
        return _CallDetails(
            details.method,
            details.timeout,
            tuple(kv for kv in given if kv[0] not in ours) + self._metadata,
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)


def open_channel(
    target: str, auth: ClientAuth, options: Sequence[tuple[str, Any]] = ()
) -> grpc.Channel:
    """A channel to `target` (TLS when `auth` says so) that sends `auth`'s metadata."""
    opts = [*_CHANNEL_OPTIONS, *options]
    if auth.tls is None:
        channel = grpc.insecure_channel(target, options=opts)
    else:
        channel = grpc.secure_channel(target, auth.tls.channel_credentials(), options=opts)
    metadata = auth.metadata()
    return grpc.intercept_channel(channel, _Credentials(metadata)) if metadata else channel


class ServiceClient:
    """One channel to one service. Use as a context manager or call close().

    `auth` is the credential to present; by default, the one `mrmctl` would
    find (`ClientAuth.from_env()`: MRM_TOKEN, a CI job's id-token, …).
    """

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        auth: ClientAuth | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self.auth = ClientAuth.from_env() if auth is None else auth
        self._channel = open_channel(target, self.auth)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(
        self,
        method: Callable[..., _Resp],
        request: Any,
        metadata: Sequence[tuple[str, str]] | None = None,
    ) -> _Resp:
        try:
            return method(request, timeout=self.timeout, metadata=metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None


def open_aio_channel(target: str, auth: ClientAuth) -> grpc.aio.Channel:
    """An asyncio channel to `target`, TLS when `auth` says so. Calls on it must pass
    `metadata=auth.metadata()` themselves (asyncio channels take no interceptor here)."""
    if auth.tls is None:
        return grpc.aio.insecure_channel(target, options=_CHANNEL_OPTIONS)
    return grpc.aio.secure_channel(target, auth.tls.channel_credentials(), options=_CHANNEL_OPTIONS)
