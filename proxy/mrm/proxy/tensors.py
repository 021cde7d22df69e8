"""Tensors in and out of the Open Inference Protocol: request → numpy → response.

This is on every prediction's path. Raw tensors (what Triton's and KServe's
clients send by default) become arrays through numpy.frombuffer, with no copy
beyond protobuf's own; typed contents cost one conversion per tensor. Only
BYTES tensors, whose elements each carry a length, are walked element by
element.

Each rejection is an InvalidArgument that names the request field and what the
model expected, so a caller can fix the request from the message alone.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from mrm.core.errors import InvalidArgument
from mrm.oip.v2 import grpc_predict_v2_pb2 as pb

Array = npt.NDArray[Any]


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """A model input or output as the protocol describes it.

    `shape` holds -1 for a variable-size dimension (for MRM's models, the first:
    the batch).
    """

    name: str
    datatype: str
    shape: tuple[int, ...]


# datatype: (numpy dtype of its raw form, its InferTensorContents field, that
# field's numpy dtype). The raw form is little-endian whatever the host, so the
# byte order is spelled out. FP16 has no typed field: the protocol sends it raw.
_TYPES: dict[str, tuple[np.dtype[Any], str, str]] = {
    name: (np.dtype(raw), field, wire)
    for name, (raw, field, wire) in {
        "BOOL": ("?", "bool_contents", "?"),
        "UINT8": ("u1", "uint_contents", "u4"), "UINT16": ("<u2", "uint_contents", "u4"),
        "UINT32": ("<u4", "uint_contents", "u4"), "UINT64": ("<u8", "uint64_contents", "u8"),
        "INT8": ("i1", "int_contents", "i4"), "INT16": ("<i2", "int_contents", "i4"),
        "INT32": ("<i4", "int_contents", "i4"), "INT64": ("<i8", "int64_contents", "i8"),
        "FP16": ("<f2", "", ""),
        "FP32": ("<f4", "fp32_contents", "f4"), "FP64": ("<f8", "fp64_contents", "f8"),
        "BYTES": ("O", "bytes_contents", "O"),
    }.items()
}  # fmt: skip
_BY_KIND = {(dt.kind, dt.itemsize): name for name, (dt, _, _) in _TYPES.items() if name != "BYTES"}
_LENGTH = struct.Struct("<I")  # the 4-byte length before each raw BYTES element


def decode_inputs(
    request: pb.ModelInferRequest, expected: Sequence[TensorSpec], *, model: str = ""
) -> dict[str, Array]:
    """The request's inputs as arrays, keyed by name, in the order of `expected`.

    Every expected input must be given once, with its datatype, rank and fixed
    dimensions, and with exactly as many elements as its shape says. Inputs
    whose first dimension is variable must agree on it (the number of rows).
    Raw arrays are read-only views of the request's bytes. BYTES elements come
    back as `str`: ONNX string tensors hold text, so they must be UTF-8.
    `model` names the model in messages ("credit-risk 1.2.4"); by default the
    request's own model name and version.
    """
    if len(expected) == 1:
        fast = _one_raw_tensor(request, expected[0])
        if fast is not None:
            return fast
    label = model or f"{request.model_name} {request.model_version}".strip()
    raw = request.raw_input_contents
    if raw and len(raw) != len(request.inputs):
        raise InvalidArgument(
            "raw_input_contents",
            f"has {len(raw)} entries for {len(request.inputs)} inputs; give one per input, "
            "in order, or none and typed `contents` for every input",
        )
    specs = {spec.name: spec for spec in expected}
    arrays: dict[str, Array] = {}
    seen: dict[str, int] = {}
    rows: tuple[int, int] | None = None  # (number of rows, the input that set it)
    for i, tensor in enumerate(request.inputs):
        at, spec = f"inputs[{i}]", specs.get(tensor.name)
        if spec is None:
            names = ", ".join(specs)
            raise InvalidArgument(
                f"{at}.name", f"{tensor.name!r} is not an input of {label} (inputs: {names})"
            )
        if tensor.name in seen:
            raise InvalidArgument(
                f"{at}.name", f"{tensor.name!r} is given twice (also inputs[{seen[tensor.name]}])"
            )
        seen[tensor.name] = i
        if tensor.datatype != spec.datatype:
            raise InvalidArgument(
                f"{at}.datatype", f"{tensor.datatype!r}, but {spec.name} is {spec.datatype}"
            )
        shape = tuple(tensor.shape)
        want = list(spec.shape)
        if len(shape) != len(want) or any(
            n < 0 or w not in (-1, n) for n, w in zip(shape, want, strict=True)
        ):
            raise InvalidArgument(
                f"{at}.shape",
                f"{list(shape)} does not fit {spec.name}'s shape {want} (-1: any size)",
            )
        if want and want[0] == -1:
            rows = rows or (shape[0], i)
            if shape[0] != rows[0]:
                raise InvalidArgument(
                    f"{at}.shape", f"has {shape[0]} rows but inputs[{rows[1]}] has {rows[0]}"
                )
        if raw:
            if tensor.HasField("contents"):
                raise InvalidArgument(
                    f"{at}.contents", "is set although the request uses raw_input_contents"
                )
            arrays[spec.name] = _from_raw(raw[i], spec.datatype, shape, f"raw_input_contents[{i}]")
        elif not tensor.HasField("contents") and 0 not in shape:
            raise InvalidArgument(f"{at}.contents", "has no data (nor does raw_input_contents)")
        else:
            arrays[spec.name] = _from_contents(
                tensor.contents, spec.datatype, shape, f"{at}.contents"
            )
    for spec in expected:
        if spec.name not in arrays:
            given = ", ".join(seen) or "no inputs"
            need = f"{spec.name!r} ({spec.datatype} {list(spec.shape)})"
            raise InvalidArgument(
                "inputs", f"{label} needs input {need}; the request gives {given}"
            )
    return {spec.name: arrays[spec.name] for spec in expected}


def _one_raw_tensor(request: pb.ModelInferRequest, spec: TensorSpec) -> dict[str, Array] | None:
    """The common request (one raw numeric tensor that fits) in a few checks; None for
    anything else, which the general path then accepts or explains."""
    if len(request.inputs) != 1 or len(request.raw_input_contents) != 1:
        return None
    tensor, data = request.inputs[0], request.raw_input_contents[0]
    if tensor.name != spec.name or tensor.datatype != spec.datatype or spec.datatype in _SLOW:
        return None
    shape = tuple(tensor.shape)
    if len(shape) != len(spec.shape) or tensor.HasField("contents"):
        return None
    for n, w in zip(shape, spec.shape, strict=True):
        if n < 0 or w not in (-1, n):
            return None
    dtype = _TYPES[spec.datatype][0]
    if len(data) != math.prod(shape) * dtype.itemsize:
        return None
    # One call: a read-only view of the request's bytes in the tensor's shape.
    return {spec.name: np.ndarray(shape, dtype, data)}


_SLOW = ("BYTES", "BOOL")  # per-element checks: the general path


def check_finite(arrays: Mapping[str, Array], allow_nan: bool) -> None:
    """Rejects NaN and infinity in floating-point inputs, naming input and row.

    With `allow_nan` (a model that takes NaN as a missing value, as tree
    ensembles do) NaN passes but infinity is still rejected: scikit-learn's
    "allow-nan" draws the same line.
    """
    for name, array in arrays.items():
        if array.dtype.kind != "f":
            continue
        if np.isfinite(array).all():  # the common case: one pass, no index work
            continue
        bad = np.isinf(array) if allow_nan else ~np.isfinite(array)
        if not bad.any():
            continue
        where = tuple(int(k) for k in np.argwhere(bad)[0])
        value = float(array[where])
        what = "NaN" if math.isnan(value) else ("infinity" if value > 0 else "-infinity")
        at = "the value" if not where else f"row {where[0]}"
        at += f", column {where[1]}," if len(where) == 2 else ""
        rule = "accepts NaN but not infinity" if allow_nan else "does not accept NaN or infinity"
        raise InvalidArgument(f"inputs[{name!r}]", f"{at} is {what}; this model {rule}")


def encode_outputs(
    response: pb.ModelInferResponse, outputs: Mapping[str, Array], *, raw: bool
) -> None:
    """Appends the outputs to the response, raw or typed.

    Answer raw exactly when the request was raw, as Triton does: clients that
    send raw read raw. Strings and bytes go out as BYTES; FP16 is widened to
    FP32 in typed form, which has no 16-bit field.
    """
    for name, array in outputs.items():
        datatype = _datatype_of(name, array)
        if datatype == "FP16" and not raw:
            array, datatype = array.astype(np.float32), "FP32"
        tensor = response.outputs.add(name=name, datatype=datatype, shape=array.shape)
        if datatype == "BYTES":
            try:  # the common case: text labels
                items = [item.encode() for item in array.ravel().tolist()]
            except AttributeError:
                items = [_to_bytes(name, item) for item in array.ravel().tolist()]
            if raw:
                response.raw_output_contents.append(
                    b"".join(part for item in items for part in (_LENGTH.pack(len(item)), item))
                )
            else:
                tensor.contents.bytes_contents.extend(items)
        elif raw:
            response.raw_output_contents.append(
                array.astype(_TYPES[datatype][0], copy=False).tobytes()
            )
        else:
            getattr(tensor.contents, _TYPES[datatype][1]).extend(array.ravel().tolist())


def _from_raw(data: bytes, datatype: str, shape: tuple[int, ...], field: str) -> Array:
    count = math.prod(shape)
    if datatype == "BYTES":
        return _strings(_split_bytes(data, field), count, shape, field)
    dtype = _TYPES[datatype][0]
    if len(data) != count * dtype.itemsize:
        raise InvalidArgument(
            field,
            f"has {len(data)} bytes; {datatype} {list(shape)} needs {count * dtype.itemsize} "
            f"({count} elements of {dtype.itemsize} bytes)",
        )
    if datatype == "BOOL" and count and np.frombuffer(data, np.uint8).max() > 1:
        raise InvalidArgument(field, "BOOL elements must be bytes 0 or 1")
    return np.frombuffer(data, dtype, count).reshape(shape)


def _from_contents(
    contents: pb.InferTensorContents, datatype: str, shape: tuple[int, ...], field: str
) -> Array:
    target, name, wire = _TYPES[datatype]
    if not name:
        raise InvalidArgument(field, f"{datatype} has no typed form; send it in raw_input_contents")
    others = [f.name for f, _ in contents.ListFields() if f.name != name]
    if others:
        raise InvalidArgument(field, f"{datatype} values go in {name}, not {', '.join(others)}")
    values = getattr(contents, name)
    count = math.prod(shape)
    if len(values) != count:
        raise InvalidArgument(
            f"{field}.{name}", f"has {len(values)} values; {datatype} {list(shape)} needs {count}"
        )
    if datatype == "BYTES":
        return _strings(values, count, shape, f"{field}.{name}")
    array = np.array(values, np.dtype(wire))  # far faster than np.fromiter on upb containers
    # INT8/16 and UINT8/16 travel in 32-bit fields; a cast would wrap silently.
    if target.kind in "iu" and target.itemsize < 4 and count:
        info = np.iinfo(target)
        low, high = int(array.min()), int(array.max())
        if low < info.min or high > info.max:
            bad = low if low < info.min else high
            raise InvalidArgument(f"{field}.{name}", f"{bad} is out of range for {datatype}")
    return array.astype(target, copy=False).reshape(shape)


def _split_bytes(data: bytes, field: str) -> Iterator[bytes]:
    """The elements of a raw BYTES tensor: each a 4-byte length, then that many bytes."""
    pos, end = 0, len(data)
    while pos < end:
        if end - pos < 4:
            raise InvalidArgument(field, f"ends with {end - pos} bytes, short of a 4-byte length")
        (size,) = _LENGTH.unpack_from(data, pos)
        pos += 4
        if size > end - pos:
            raise InvalidArgument(field, f"an element declares {size} bytes; {end - pos} remain")
        yield data[pos : pos + size]
        pos += size


def _strings(items: Iterable[bytes], count: int, shape: tuple[int, ...], field: str) -> Array:
    # Count before allocating: a shape of 2**40 elements must not reach np.empty.
    texts: list[str] = []
    for item in items:
        if len(texts) == count:  # stop before walking the rest of an oversized tensor
            raise InvalidArgument(field, f"has more than the {count} elements of {list(shape)}")
        try:
            texts.append(item.decode())
        except UnicodeDecodeError:
            raise InvalidArgument(field, f"element {len(texts)} is not UTF-8 text") from None
    if len(texts) != count:
        raise InvalidArgument(
            field, f"holds {len(texts)} elements; BYTES {list(shape)} needs {count}"
        )
    array = np.empty(count, dtype=object)
    array[:] = texts
    return array.reshape(shape)


def _datatype_of(name: str, array: Array) -> str:
    if array.dtype.kind in "OUS":
        return "BYTES"
    datatype = _BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if datatype is None:
        raise TypeError(f"output {name!r}: numpy {array.dtype} has no protocol datatype")
    return datatype


def _to_bytes(name: str, item: object) -> bytes:
    if isinstance(item, str):
        return item.encode()
    if isinstance(item, bytes):
        return item
    raise TypeError(f"output {name!r}: a {type(item).__name__} cannot be sent as BYTES")


# -- for the REST/JSON binding -------------------------------------------------------


def typed_field(datatype: str) -> str:
    """The InferTensorContents field that holds `datatype`'s values ('' for FP16,
    which has none); KeyError when `datatype` is not one of the protocol's."""
    return _TYPES[datatype][1]


def to_raw(datatype: str, values: Sequence[Any]) -> bytes:
    """Flat values (as JSON gives them) in the raw, little-endian form; BYTES as
    4-byte lengths and UTF-8. TypeError or ValueError when a value does not fit."""
    if datatype == "BYTES":
        items = [v.encode() if isinstance(v, str) else bytes(v) for v in values]
        return b"".join(part for item in items for part in (_LENGTH.pack(len(item)), item))
    return np.asarray(values, dtype=_TYPES[datatype][0]).tobytes()


def output_datatype(name: str, array: Array) -> str:
    """The protocol datatype an output goes out as."""
    return _datatype_of(name, array)


def output_raw(name: str, array: Array) -> bytes:
    """An output in the raw form (what gRPC's raw_output_contents and the HTTP binary
    tensor extension carry)."""
    datatype = _datatype_of(name, array)
    if datatype == "BYTES":
        items = [_to_bytes(name, item) for item in array.ravel().tolist()]
        return b"".join(part for item in items for part in (_LENGTH.pack(len(item)), item))
    return array.astype(_TYPES[datatype][0], copy=False).tobytes()
