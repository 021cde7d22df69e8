"""mrm.v1.AuthService: which identity a server verified for our credential.

with AuthClient("localhost:50052") as auth:
    print(auth.whoami().principal)
"""

from __future__ import annotations

from mrm.client.channel import ServiceClient
from mrm.client.credentials import ClientAuth
from mrm.v1 import auth_pb2, auth_pb2_grpc


class AuthClient(ServiceClient):
    """AuthService over one channel; every MRM gRPC server answers it."""

    def __init__(
        self, target: str, *, timeout: float = 30.0, auth: ClientAuth | None = None
    ) -> None:
        super().__init__(target, timeout=timeout, auth=auth)
        self._stub = auth_pb2_grpc.AuthServiceStub(self._channel)

    def whoami(self) -> auth_pb2.Identity:
        return self._call(self._stub.WhoAmI, auth_pb2.WhoAmIRequest()).identity
