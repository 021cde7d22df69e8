"""Load the evaluation CSV, or say in one line what is wrong with it.

The file's sha256 is taken over the bytes pandas parses, so the hash in the
performance snapshot names exactly the data the metrics came from. Rows in
messages are 0-based data rows (the header is not a row).

Missing values: a model "can take" NaN if scikit-learn's own predict accepts
the rows that contain it (HistGradientBoosting does, most estimators do not).
scikit-learn's single trees and forests take NaN too, but skl2onnx loses where
they send it; the fidelity check reports that, with a hint, rather than this
module guessing. Given only an InputSchema there is no model to ask, so NaNs
are refused.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.errors import DeployError
from mrm.kernel.schema import InputSchema

_SHOWN = 5  # rows or columns quoted in a message before "..."
_CASTS = {"float": "float64", "int": "int64", "bool": "bool"}


def _listing(items: list[Any]) -> str:
    shown = ", ".join(str(i) for i in items[:_SHOWN])
    return shown + (f", ... ({len(items)} in all)" if len(items) > _SHOWN else "")


def _read(path: Path) -> tuple[pd.DataFrame, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError as e:
        raise DeployError(f"evaluation data {path} does not exist") from e
    except OSError as e:
        raise DeployError(f"cannot read evaluation data {path}: {e.strerror}") from e
    sha256 = hashlib.sha256(data).hexdigest()
    if not data.strip():
        raise DeployError(f"evaluation data {path} is empty")
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise DeployError(f"evaluation data {path} is not a readable CSV: {e}") from e
    if frame.empty:
        raise DeployError(f"evaluation data {path} has a header but no rows")
    return frame, sha256


def _feature_names(model: Any, columns: list[str], target: str) -> list[str]:
    if isinstance(model, InputSchema):
        return model.names
    fitted = getattr(model, "feature_names_in_", None)
    if fitted is not None:
        return [str(n) for n in fitted]
    # Fitted on an array: the CSV's own order is all there is.
    names = [c for c in columns if c != target]
    expected = getattr(model, "n_features_in_", len(names))
    if len(names) != expected:
        raise DeployError(
            f"evaluation data has {len(names)} feature columns, the model takes {expected}"
        )
    return names


def _nan_message(X: pd.DataFrame) -> str:
    parts = []
    for col in X.columns[X.isna().any()]:
        rows = np.flatnonzero(X[col].isna().to_numpy()).tolist()
        parts.append(f"{col!r} (rows {_listing(rows)})")
    return "NaN in column " + "; ".join(parts)


def _model_form(model: Any, X: pd.DataFrame) -> Any:
    """The features as the estimator was fitted on them: named or a plain array."""
    if isinstance(model, InputSchema) or getattr(model, "feature_names_in_", None) is not None:
        return X
    return X.to_numpy()


@dataclass(frozen=True)
class EvalData:
    X: Any
    """The features, as the model takes them (see load_eval_csv)."""
    y: Any
    sha256: str
    sensitive: dict[str, Any] = field(default_factory=dict)
    """Each [fairness] sensitive column's values, row for row; model input or not."""


def load_eval_csv(path: str | Path, target: str, model: Any) -> tuple[Any, Any, str]:
    """(X, y, sha256 of the file) for `model`, an estimator or an InputSchema.

    X is a DataFrame in the model's feature order when the model knows feature
    names (and always for an InputSchema), else a NumPy array.
    """
    data = load_eval(path, target, model)
    return data.X, data.y, data.sha256


def load_eval(path: str | Path, target: str, model: Any, sensitive: Sequence[str] = ()) -> EvalData:
    """load_eval_csv, and the `sensitive` columns: read from the file, fed to the
    model only if they are among its features."""
    path = Path(path)
    frame, sha256 = _read(path)
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if target not in columns:
        raise DeployError(
            f"evaluation data has no target column {target!r}; its columns are {_listing(columns)}"
        )
    absent = [c for c in sensitive if c not in columns]
    if absent:
        raise DeployError(
            f"evaluation data {path} has no sensitive column {', '.join(map(repr, absent))} "
            f"([fairness] sensitive); its columns are {_listing(columns)}"
        )
    names = _feature_names(model, [c for c in columns if c not in sensitive], target)
    extra = [c for c in columns if c not in names and c != target and c not in sensitive]
    missing = [n for n in names if n not in columns]
    if extra or missing:
        raise DeployError(
            "evaluation data columns differ from the model's features: "
            f"extra {extra or 'none'}, missing {missing or 'none'}"
        )
    y = frame[target]
    if y.isna().any():
        rows = np.flatnonzero(y.isna().to_numpy()).tolist()
        raise DeployError(f"target column {target!r} has no value in rows {_listing(rows)}")
    X = frame[names]
    if isinstance(model, InputSchema):
        X = _cast(X, model)
    if X.isna().any().any():
        _check_nan_accepted(model, X)
    groups = {c: frame[c].to_numpy() for c in sensitive}
    return EvalData(_model_form(model, X), y.to_numpy(), sha256, groups)


def _cast(X: pd.DataFrame, schema: InputSchema) -> pd.DataFrame:
    out = X.copy()
    for f in schema.features:
        try:
            out[f.name] = X[f.name].astype(_CASTS[f.dtype]) if f.dtype in _CASTS else X[f.name]
        except (ValueError, TypeError) as e:
            if X[f.name].isna().any():
                continue  # reported as missing values below, which is clearer
            raise DeployError(f"column {f.name!r} is not {f.dtype}: {e}") from e
    return out


def _check_nan_accepted(model: Any, X: pd.DataFrame) -> None:
    message = _nan_message(X)
    if isinstance(model, InputSchema):
        raise DeployError(f"{message}; cannot tell from a schema whether the model takes NaN")
    with_nan = X[X.isna().any(axis=1).to_numpy()]
    try:
        model.predict(_model_form(model, with_nan))
    except ValueError as e:
        reason = str(e).strip().splitlines()[0]
        name = type(model).__name__
        raise DeployError(f"{message}; the {name} cannot take missing values ({reason})") from e
