"""The Open Inference Protocol v2 over HTTP/REST: what tritonclient.http and KServe's
REST clients speak, served from the same core as gRPC (`mrm.proxy.core`).

Routes (the protocol's): `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`,
`GET /v2/models/{name}[/versions/{version}]`, `…/ready` and `POST …/infer`.
Tensors travel as JSON (`data`, flat or nested, row-major; BYTES as strings) or in
Triton's binary tensor extension (a JSON header of `Inference-Header-Content-Length`
bytes, then each binary tensor's raw bytes in order), which tritonclient.http uses
by default for inputs and outputs. Inputs are decoded by the same code as gRPC's,
so a request is accepted, refused, and recorded exactly as over gRPC. Errors are
`{"error": "..."}` with 400 (bad request), 404 (unknown model or version), 401/403
(credentials), 503 (a strict model that cannot record) or 500.

With MRM_PROXY_REQUIRE_TOKEN, inference and metadata need a bearer token (any
role), as over gRPC; the health routes never do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import grpc
import orjson
from aiohttp import web

from mrm.core.auth.authenticator import Authenticator
from mrm.core.errors import InvalidArgument, MrmError
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb
from mrm.proxy.core import InferenceCore, InferRequest, InferResponse, parent_context
from mrm.proxy.core import server_version as _server_version
from mrm.proxy.tensors import (
    Array,
    TensorSpec,
    decode_inputs,
    output_datatype,
    output_raw,
    to_raw,
    typed_field,
)

log = logging.getLogger(__name__)

HEADER_LENGTH = "Inference-Header-Content-Length"
_JSON = "application/json"
_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
}
_HEALTH = ("/v2/health/live", "/v2/health/ready")


def _error(status: int, message: str, **headers: str) -> web.Response:
    return web.Response(
        status=status,
        body=orjson.dumps({"error": message}),
        content_type=_JSON,
        headers=headers or None,
    )


def _json(doc: Any) -> web.Response:
    return web.Response(body=orjson.dumps(doc), content_type=_JSON)


def _spec(spec: TensorSpec) -> dict[str, Any]:
    return {"name": spec.name, "datatype": spec.datatype, "shape": list(spec.shape)}


class RestInference:
    """The HTTP adapter: JSON (and binary tensors) ↔ the core's domain types."""

    def __init__(
        self,
        core: InferenceCore,
        *,
        authenticator: Authenticator | None = None,
        max_body_bytes: int = 64 << 20,
    ) -> None:
        self.core = core
        self.authenticator = authenticator  # None: inference needs no token
        self.failed = ""  # why it could not listen
        self.addresses: Sequence[str] = ()  # where it listens, once it does
        self._routes = {
            False: core.route(
                "POST /v2/models/{model_name}/infer", _attributes("/v2/models/{model_name}/infer")
            ),
            True: core.route(
                "POST /v2/models/{model_name}/versions/{model_version}/infer",
                _attributes("/v2/models/{model_name}/versions/{model_version}/infer"),
            ),
        }
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._guard])
        self.app.add_routes(
            [
                web.get("/v2/health/live", self.live),
                web.get("/v2/health/ready", self.ready),
                web.get("/v2", self.server_metadata),
                web.get("/v2/models/{name}", self.model_metadata),
                web.get("/v2/models/{name}/versions/{version}", self.model_metadata),
                web.get("/v2/models/{name}/ready", self.model_ready),
                web.get("/v2/models/{name}/versions/{version}/ready", self.model_ready),
                web.post("/v2/models/{name}/infer", self.infer),
                web.post("/v2/models/{name}/versions/{version}/infer", self.infer),
            ]
        )

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Domain errors as JSON with their HTTP status; the token check."""
        try:
            if self.authenticator is not None and not _public(request.path):
                await self._authenticate(request)
            response: web.StreamResponse = await handler(request)
            return response
        except MrmError as exc:
            status = _STATUS.get(exc.code, 500)
            if status == 401:
                return _error(status, exc.message, **{"WWW-Authenticate": 'Bearer realm="mrm"'})
            return _error(status, exc.message if status != 500 else "internal error")
        except web.HTTPException as exc:
            if exc.status >= 400:  # unknown route, wrong method, body too large
                return _error(exc.status, exc.reason)
            raise
        except Exception:
            log.exception("REST %s %s failed", request.method, request.path)
            return _error(500, "internal error")

    async def _authenticate(self, request: web.Request) -> None:
        authenticator = self.authenticator
        assert authenticator is not None
        authorization = request.headers.get("Authorization")
        if authenticator.is_slow(authorization):
            await asyncio.to_thread(authenticator.authenticate, authorization, None)
        else:
            authenticator.authenticate(authorization, None)

    # -- health and metadata --------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return _json({"live": self.core.live()})

    async def ready(self, request: web.Request) -> web.Response:
        ready = self.core.ready()
        return web.Response(
            status=200 if ready else 503,
            body=orjson.dumps({"ready": ready}),
            content_type=_JSON,
        )

    async def server_metadata(self, request: web.Request) -> web.Response:
        return _json({"name": "mrm", "version": _server_version(), "extensions": []})

    async def model_metadata(self, request: web.Request) -> web.Response:
        meta = self.core.metadata(request.match_info["name"], request.match_info.get("version", ""))
        return _json(
            {
                "name": meta.name,
                "versions": meta.versions,
                "platform": meta.platform,
                "inputs": [_spec(s) for s in meta.inputs],
                "outputs": [_spec(s) for s in meta.outputs],
            }
        )

    async def model_ready(self, request: web.Request) -> web.Response:
        name, model_version = request.match_info["name"], request.match_info.get("version", "")
        ready = self.core.model_ready(name, model_version)
        return web.Response(
            status=200 if ready else 404 if not _known(self.core, name) else 503,
            body=orjson.dumps({"name": name, "ready": ready}),
            content_type=_JSON,
        )

    # -- inference -----------------------------------------------------------------

    async def infer(self, request: web.Request) -> web.Response:
        body = await request.read()
        header_length = request.headers.get(HEADER_LENGTH)
        doc, binary = _split(body, header_length)
        model_version = request.match_info.get("version", "")
        given = _object(doc.get("parameters"), "parameters")
        subject = given.get("subject_id", "")
        if not isinstance(subject, str):
            raise InvalidArgument("parameters.subject_id", "must be a string")
        wire, problems = _wire_request(request.match_info["name"], model_version, doc, binary)
        binary_out = _binary_outputs(doc, given)

        def decode(specs: Sequence[TensorSpec], label: str) -> dict[str, Array]:
            try:
                return decode_inputs(wire, specs, model=label)
            except InvalidArgument as exc:
                raise problems.get(exc.field, exc) from None

        result = await self.core.infer(
            InferRequest(
                wire.model_name,
                model_version,
                decode,
                id=wire.id,
                subject_id=subject,
                outputs=[o["name"] for o in doc.get("outputs") or ()],
                parent=parent_context((k.lower(), v) for k, v in request.headers.items()),
            ),
            self._routes[bool(model_version)],
        )
        return _response(result, binary_out)


def _attributes(route: str) -> dict[str, str]:
    return {"http.request.method": "POST", "http.route": route, "rpc.system": "oip-v2-rest"}


def _public(path: str) -> bool:
    return path in _HEALTH or path.endswith("/ready")


def _known(core: InferenceCore, name: str) -> bool:
    return bool(core.models.table.versions.get(name))


def _split(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """The JSON document and the binary tensors after it."""
    if header_length is not None:
        try:
            n = int(header_length)
        except ValueError:
            n = -1
        if not 0 <= n <= len(body):
            raise InvalidArgument(
                HEADER_LENGTH, f"{header_length!r} is not a length within the {len(body)}-byte body"
            )
        text, binary = body[:n], body[n:]
    else:
        text, binary = body, b""
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument("body", f"is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidArgument("body", "must be a JSON object with 'inputs'")
    return doc, binary


def _object(value: Any, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidArgument(field, "must be a JSON object")
    return value


def _flat(data: Any, field: str) -> list[Any]:
    if not isinstance(data, list):
        raise InvalidArgument(field, "must be a JSON array")
    while data and isinstance(data[0], list):  # nested, row-major
        data = [x for row in data for x in (row if isinstance(row, list) else [row])]
    flat: list[Any] = data
    return flat


def _wire_request(
    name: str, model_version: str, doc: dict[str, Any], binary: bytes
) -> tuple[pb.ModelInferRequest, dict[str, InvalidArgument]]:
    """The request as the protocol's protobuf, so that it is decoded and checked by
    the same code as a gRPC request. Binary tensors become raw contents (and then the
    JSON ones too: the protocol has raw for every input or for none).

    Values that do not convert to their tensor's datatype are left out and their
    error kept under the field the decoder then finds empty: a wrong datatype or
    shape is reported as over gRPC, and only a right one with wrong values as such."""
    problems: dict[str, InvalidArgument] = {}
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise InvalidArgument("inputs", "must be a non-empty JSON array of tensors")
    request_id = doc.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument("id", "must be a string")
    wire = pb.ModelInferRequest(model_name=name, model_version=model_version, id=request_id)
    raw: list[bytes | None] = []
    pos = 0
    for i, tensor in enumerate(inputs):
        at = f"inputs[{i}]"
        if not isinstance(tensor, dict):
            raise InvalidArgument(at, "must be a JSON object (name, shape, datatype, data)")
        tname, datatype, shape = tensor.get("name"), tensor.get("datatype"), tensor.get("shape")
        if not isinstance(tname, str) or not tname:
            raise InvalidArgument(f"{at}.name", "is required")
        if not isinstance(datatype, str):
            raise InvalidArgument(f"{at}.datatype", "is required")
        if not isinstance(shape, list) or not all(
            isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
        ):
            raise InvalidArgument(f"{at}.shape", "must be an array of non-negative integers")
        try:
            typed_field(datatype)
        except KeyError:
            raise InvalidArgument(
                f"{at}.datatype", f"{datatype!r} is not an Open Inference Protocol datatype"
            ) from None
        wire.inputs.add(name=tname, datatype=datatype, shape=shape)
        size = _object(tensor.get("parameters"), f"{at}.parameters").get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or size < 0 or pos + size > len(binary):
                raise InvalidArgument(
                    f"{at}.parameters.binary_data_size",
                    f"{size!r} does not fit the {len(binary) - pos} binary bytes left",
                )
            raw.append(binary[pos : pos + size])
            pos += size
        else:
            raw.append(None)
    if pos != len(binary):
        raise InvalidArgument("body", f"has {len(binary) - pos} binary bytes no input claims")
    if any(r is not None for r in raw):
        for i, (tensor, part) in enumerate(zip(inputs, raw, strict=True)):
            if part is None:
                field = f"inputs[{i}].data"
                values = _flat(tensor.get("data"), field)
                try:
                    part = to_raw(tensor["datatype"], values)
                except (TypeError, ValueError, AttributeError):
                    problems[f"raw_input_contents[{i}]"] = InvalidArgument(
                        field, f"holds values that are not {tensor['datatype']}"
                    )
                    part = b""
            wire.raw_input_contents.append(part)
        return wire, problems
    for i, (tensor, out) in enumerate(zip(inputs, wire.inputs, strict=True)):
        field = f"inputs[{i}].data"
        if "data" not in tensor:
            raise InvalidArgument(field, "is required (or binary_data_size)")
        values = _flat(tensor["data"], field)
        name = typed_field(out.datatype)
        if not name:
            raise InvalidArgument(field, f"{out.datatype} has no JSON form; send it binary")
        try:
            if out.datatype == "BYTES":
                values = [v.encode() for v in values]  # AttributeError: not a string
            getattr(out.contents, name).extend(values)
        except (TypeError, ValueError, AttributeError):
            out.ClearField("contents")
            what = "strings" if out.datatype == "BYTES" else out.datatype
            problems[f"inputs[{i}].contents"] = InvalidArgument(
                field, f"holds values that are not {what}"
            )
    return wire, problems


def _binary_outputs(doc: dict[str, Any], given: dict[str, Any]) -> dict[str, bool] | bool:
    """Which outputs go out binary: per requested output (`parameters.binary_data`),
    else all or none by the request's `binary_data_output`."""
    default = bool(given.get("binary_data_output", False))
    outputs = doc.get("outputs")
    if outputs is None:
        return default
    if not isinstance(outputs, list):
        raise InvalidArgument("outputs", "must be a JSON array")
    chosen: dict[str, bool] = {}
    for i, out in enumerate(outputs):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            raise InvalidArgument(f"outputs[{i}]", "must be a JSON object with a name")
        params = _object(out.get("parameters"), f"outputs[{i}].parameters")
        chosen[out["name"]] = bool(params.get("binary_data", default))
    return chosen


def _data(array: Array) -> list[Any]:
    values: list[Any] = array.ravel().tolist()
    if array.dtype.kind in "OS":
        return [v.decode() if isinstance(v, bytes) else v for v in values]
    return values


def _response(result: InferResponse, binary: dict[str, bool] | bool) -> web.Response:
    outputs: list[dict[str, Any]] = []
    parts: list[bytes] = []
    for name, array in result.outputs.items():
        tensor: dict[str, Any] = {
            "name": name,
            "datatype": output_datatype(name, array),
            "shape": list(array.shape),
        }
        if binary if isinstance(binary, bool) else binary.get(name, False):
            part = output_raw(name, array)
            parts.append(part)
            tensor["parameters"] = {"binary_data_size": len(part)}
        else:
            tensor["data"] = _data(array)
        outputs.append(tensor)
    doc = {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "id": result.id,
        "parameters": result.parameters,
        "outputs": outputs,
    }
    header = orjson.dumps(doc)
    if not parts:
        return web.Response(body=header, content_type=_JSON)
    return web.Response(
        body=b"".join([header, *parts]),
        content_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


async def serve_rest(
    adapter: RestInference, addr: str, stopping: asyncio.Event, *, reuse_port: bool
) -> None:
    """Serves until `stopping` is set (MRM_PROXY_HTTP_ADDR; port 0: any free port).
    A failed bind is logged and leaves `adapter.failed` set; gRPC serves on (the REST
    port is an extra door, and 8080 is often taken on a workstation)."""
    host, _, port = addr.rpartition(":")
    runner = web.AppRunner(adapter.app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host or None, int(port), reuse_port=reuse_port or None)
        try:
            await site.start()
        except OSError as exc:
            adapter.failed = f"cannot listen on {addr!r} ({exc})"
            log.error(
                "the proxy's REST binding %s; set MRM_PROXY_HTTP_ADDR to a free host:port, "
                "or to '' to switch it off",
                adapter.failed,
            )
            return
        adapter.addresses = _names(runner)
        log.info("Open Inference Protocol REST on %s", ", ".join(adapter.addresses))
        await stopping.wait()
    finally:
        await runner.cleanup()


def _names(runner: web.AppRunner) -> Sequence[str]:
    return [":".join(str(part) for part in a[:2]) for a in runner.addresses]


__all__ = ["RestInference", "serve_rest"]
