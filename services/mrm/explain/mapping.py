"""Which original feature each transformed column comes from.

A pipeline's scalers and encoders turn the schema's features into the matrix
the estimator sees. The exact explainers work on that matrix; to answer in the
user's features, every transformed column must come from exactly one original
feature, and the SHAP values of a feature's columns (a one-hot group) are summed.

The mapping is found empirically through the graph itself, so it holds for any
preprocessing ONNX Runtime runs: each feature in turn is replaced by another
background row's value, and the columns that move belong to it. A column that
moves with two features, or varies with none, makes the exact path unusable.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]

from mrm.explain.estimators import Unsupported

Array = np.ndarray[Any, Any]
Transform = Callable[[pd.DataFrame], Array]  # typed rows -> transformed matrix


def _moved(a: Array, b: Array) -> Array:
    """Columns where any row differs (NaN equals NaN)."""
    same = (a == b) | (np.isnan(a) & np.isnan(b))
    return np.asarray(~same.all(axis=0))


def column_owners(
    names: list[str], background: pd.DataFrame, Z: Array, transform: Transform
) -> list[int | None]:
    """owner[c] = index of the feature column c comes from; None for a constant column."""
    n = len(background)
    batches = []
    for name in names:
        shuffled = background.copy()
        shuffled[name] = np.roll(background[name].to_numpy(), 1)
        batches.append(shuffled)
    Zp = transform(pd.concat(batches, ignore_index=True)).astype(np.float64)
    moved = np.stack([_moved(Zp[j * n : (j + 1) * n], Z) for j in range(len(names))])
    return _owners(names, moved, varies=_moved(Z, np.broadcast_to(Z[:1], Z.shape)))


def _owners(names: list[str], moved: Array, varies: Array) -> list[int | None]:
    owners: list[int | None] = []
    for c in range(moved.shape[1]):
        who = np.flatnonzero(moved[:, c])
        if len(who) > 1:
            raise Unsupported(
                f"transformed column {c} depends on several features "
                f"({', '.join(names[j] for j in who)})"
            )
        if len(who) == 0 and varies[c]:
            raise Unsupported(f"transformed column {c} varies with no single feature")
        owners.append(int(who[0]) if len(who) else None)
    return owners


def resolve_row(
    names: list[str],
    owners: list[int | None],
    row: pd.DataFrame,
    background: pd.DataFrame,
    z: Array,
    Z: Array,
    transform: Transform,
) -> list[int | None]:
    """Owners for this row: a column constant over the background may move for it.

    Such a column (say the one-hot column of a category the background never
    shows) belongs to the feature whose change to a background value moves it.
    """
    unowned = [c for c, o in enumerate(owners) if o is None and not _equal(z[c], Z[0, c])]
    if not unowned:
        return owners
    batches = []
    for name in names:
        swapped = row.copy()
        swapped[name] = background[name].to_numpy()[:1]
        batches.append(swapped)
    Zs = transform(pd.concat(batches, ignore_index=True)).astype(np.float64)
    moved = np.stack([_moved(Zs[j : j + 1], z[None, :]) for j in range(len(names))])
    fixed = _owners(names, moved[:, unowned], varies=np.ones(len(unowned), dtype=bool))
    out = list(owners)
    for c, o in zip(unowned, fixed, strict=True):
        out[c] = o
    return out


def _equal(a: float, b: float) -> bool:
    return bool(a == b or (np.isnan(a) and np.isnan(b)))
