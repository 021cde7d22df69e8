"""The input schema: which features a model takes, of which types, in which order.

The schema is an artifact of every version (ARTIFACT_ROLE_INPUT_SCHEMA) and the
contract between the ONNX model and whoever feeds it. Its JSON form is RFC 8785
canonical, so equal schemas have equal bytes and equal sha256:

    {"features":[{"dtype":"float","name":"age","position":0}, ...],
     "format":"mrm.input-schema.v1","mode":"tensor"}

Inputs bind by position, never by name (skl2onnx rewrites names such as
"city name" to "city_name"):

- mode "tensor": the ONNX model has one float32 input of shape [N, n]; column
  i holds the feature at position i. Every dtype travels as float32 (bool as
  0/1); `dtype` records the column's logical type for validating requests.
- mode "columns": one ONNX input per feature, in position order, each of
  shape [N, 1] with element type float32 ("float"), int64 ("int"), string
  ("string") or bool ("bool"). Used for DataFrames with string columns and
  for pipelines with a ColumnTransformer, which selects columns by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast, get_args

from mrm.tlog.canonical import CanonicalJSONError, canonical_json, parse_json_object

Dtype = Literal["float", "int", "string", "bool"]
Mode = Literal["tensor", "columns"]
SCHEMA_FORMAT = "mrm.input-schema.v1"


@dataclass(frozen=True)
class Feature:
    name: str
    dtype: Dtype
    position: int


@dataclass(frozen=True)
class InputSchema:
    features: tuple[Feature, ...]
    mode: Mode

    def __post_init__(self) -> None:
        if not self.features:
            raise ValueError("an input schema needs at least one feature")
        if [f.position for f in self.features] != list(range(len(self.features))):
            raise ValueError("feature positions must be 0..n-1 in order")
        names = self.names
        if len(set(names)) != len(names):
            raise ValueError(
                f"feature names repeat: {sorted({n for n in names if names.count(n) > 1})}"
            )
        for f in self.features:
            if f.dtype not in get_args(Dtype):
                raise ValueError(f"feature {f.name!r} has unknown dtype {f.dtype!r}")
        if self.mode not in get_args(Mode):
            raise ValueError(f"unknown mode {self.mode!r}")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def to_json(self) -> str:
        """The canonical JSON text; UTF-8 encode it for the artifact."""
        features = [
            {"name": f.name, "dtype": f.dtype, "position": f.position} for f in self.features
        ]
        doc = {"format": SCHEMA_FORMAT, "mode": self.mode, "features": features}
        return canonical_json(doc).decode("utf-8")

    @classmethod
    def from_json(cls, text: str | bytes) -> InputSchema:
        """Parse `to_json`'s output; ValueError names what is wrong with anything else."""
        try:
            doc = parse_json_object(text)
        except CanonicalJSONError as e:
            raise ValueError(f"input schema is not valid JSON: {e}") from e
        if doc.get("format") != SCHEMA_FORMAT:
            raise ValueError(
                f"input schema format is {doc.get('format')!r}, want {SCHEMA_FORMAT!r}"
            )
        raw = doc.get("features")
        if not isinstance(raw, list) or not all(isinstance(f, dict) for f in raw):
            raise ValueError("input schema 'features' must be a list of objects")
        try:
            feats = tuple(Feature(str(f["name"]), f["dtype"], int(f["position"])) for f in raw)
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"input schema feature is malformed: {e}") from e
        mode = cast(Mode, doc.get("mode"))  # __post_init__ checks it, as it checks dtypes
        return cls(tuple(sorted(feats, key=lambda f: f.position)), mode)
