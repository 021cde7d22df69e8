"""mrm.v1.AuthService: served next to every MRM service, answers "who am I"."""

from __future__ import annotations

from typing import Any

import grpc

from mrm.core.auth.identity import principal_pb
from mrm.core.auth.interceptor import caller
from mrm.v1 import auth_pb2, auth_pb2_grpc


class AuthServicer(auth_pb2_grpc.AuthServiceServicer):
    async def WhoAmI(
        self, request: auth_pb2.WhoAmIRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> auth_pb2.WhoAmIResponse:
        return auth_pb2.WhoAmIResponse(identity=principal_pb(caller()))


SERVICE_NAME = auth_pb2.DESCRIPTOR.services_by_name["AuthService"].full_name
