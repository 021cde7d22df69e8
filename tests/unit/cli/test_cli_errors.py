"""gRPC statuses become typed exceptions, with BadRequest field violations decoded."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from mrm.client import errors
from mrm.client.ledger import LedgerClient
from mrm.v1 import ledger_pb2

Behaviour = dict[str, Any]


def _bad_request(field: str, description: str) -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            ]
        )
    )
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="bad request", details=[detail]
    )


@pytest.fixture
def fake_ledger() -> Iterator[tuple[str, Behaviour]]:
    """A LedgerService whose GetRecord fails however the test says."""
    behaviour: Behaviour = {}

    def get_record(request: ledger_pb2.GetRecordRequest, context: grpc.ServicerContext) -> Any:
        if "status" in behaviour:
            context.abort_with_status(rpc_status.to_status(behaviour["status"]))
        context.abort(behaviour["code"], behaviour.get("message", ""))

    handler = grpc.method_handlers_generic_handler(
        "mrm.v1.LedgerService",
        {
            "GetRecord": grpc.unary_unary_rpc_method_handler(
                get_record,
                request_deserializer=ledger_pb2.GetRecordRequest.FromString,
                response_serializer=ledger_pb2.GetRecordResponse.SerializeToString,
            )
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", behaviour
    server.stop(None)


def test_bad_request_details_are_decoded(fake_ledger: tuple[str, Behaviour]) -> None:
    addr, behaviour = fake_ledger
    behaviour["status"] = _bad_request("record_id", '"abc" is not a UUIDv7')
    with LedgerClient(addr) as client, pytest.raises(errors.InvalidArgument) as err:
        client.get_record("abc")
    assert err.value.code is grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.field_violations == [("record_id", '"abc" is not a UUIDv7')]
    assert err.value.summary() == 'record_id: "abc" is not a UUIDv7'


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.NOT_FOUND, errors.NotFound),
        (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExists),
        (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPrecondition),
        (grpc.StatusCode.UNAVAILABLE, errors.Unavailable),
        (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDenied),
        (grpc.StatusCode.INTERNAL, errors.InternalError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.MrmRpcError),
    ],
)
def test_status_codes_map_to_classes(
    fake_ledger: tuple[str, Behaviour], code: grpc.StatusCode, cls: type[errors.MrmRpcError]
) -> None:
    addr, behaviour = fake_ledger
    behaviour.update(code=code, message="no such record")
    with LedgerClient(addr) as client, pytest.raises(errors.MrmRpcError) as err:
        client.get_record("x")
    assert type(err.value) is cls
    assert err.value.field_violations == []
    assert err.value.summary() == "no such record"


def test_a_server_cannot_choose_the_exception_class(fake_ledger: tuple[str, Behaviour]) -> None:
    # A detail naming a Python class (Feast's mistake) must have no effect.
    addr, behaviour = fake_ledger
    behaviour.update(code=grpc.StatusCode.UNKNOWN, message="builtins.SystemExit")
    with LedgerClient(addr) as client, pytest.raises(errors.InternalError):
        client.get_record("x")


def test_unreachable_server_is_unavailable() -> None:
    with LedgerClient("127.0.0.1:1", timeout=5) as client, pytest.raises(errors.Unavailable):
        client.checkpoint()


def test_deadline_is_unavailable(fake_ledger: tuple[str, Behaviour]) -> None:
    err = errors.MrmRpcError(grpc.StatusCode.DEADLINE_EXCEEDED, "")
    assert err.summary() == "deadline exceeded"
    addr, behaviour = fake_ledger
    behaviour.update(code=grpc.StatusCode.DEADLINE_EXCEEDED)
    with LedgerClient(addr) as client, pytest.raises(errors.Unavailable):
        client.get_record("x")
