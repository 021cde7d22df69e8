"""What every MRM service client shares: one channel, a timeout, typed errors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self, TypeVar

import grpc

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


class ServiceClient:
    """One channel to one service. Use as a context manager or call close()."""

    def __init__(
        self,
        target: str,
        *,
        timeout: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=_CHANNEL_OPTIONS)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=_CHANNEL_OPTIONS)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, method: Callable[..., _Resp], request: Any) -> _Resp:
        try:
            return method(request, timeout=self.timeout)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None
