"""What a failed gRPC call told its caller: the status code, and the rich
`google.rpc.BadRequest` detail naming the violated field."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


def bad_request(call: Callable[[], object]) -> tuple[grpc.StatusCode, str, str]:
    """The status code, the violated field and its description (fails if `call` succeeds)."""
    try:
        call()
    except grpc.RpcError as exc:
        err = cast(grpc.Call, exc)  # a failed unary call is both
        status = rpc_status.from_call(err)
        field = ""
        if status is not None:
            for detail in status.details:
                br = error_details_pb2.BadRequest()
                if detail.Unpack(br):
                    field = br.field_violations[0].field
        return err.code(), field, err.details() or ""
    raise AssertionError("the call succeeded")
