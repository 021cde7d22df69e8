"""Load a user's model file without running code hidden in it.

A pickle is a program: unpickling calls whatever the file names. `.pkl`,
`.pickle` and `.joblib` files therefore go through one restricted unpickler (a
subclass of joblib's, so files written by `joblib.dump` load whatever their
extension) whose `find_class` hands out only the allow-list below and refuses
anything else before it can be called. `.skops` files go through skops, and the
types skops does not trust by default are checked against the same allow-list.

Naming only allowed globals is not enough on its own, so the loader also:
refuses a pickle that sets attributes on a class or function (that would patch
it for the whole process), and refuses any object carrying a dunder attribute
such as `__array_interface__`, through which numpy reads and writes raw memory.
Exhausting memory or time is out of scope: CI runners bound both.
"""

from __future__ import annotations

import _compat_pickle
import hashlib
import importlib
import importlib.util
import inspect
import io
import pickle
import stat
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import skops.io  # type: ignore[import-untyped,unused-ignore]
from joblib.numpy_pickle import NumpyArrayWrapper, NumpyUnpickler  # type: ignore[import-untyped,unused-ignore]
from joblib.numpy_pickle_utils import (  # type: ignore[import-untyped,unused-ignore]
    _validate_fileobject_and_memmap,  # private, but the only way to read joblib's compression
)

from mrm.deploy.errors import DeployError

Format = Literal["skops", "pickle", "joblib"]
FORMATS: dict[str, Format] = {
    ".skops": "skops",
    ".pkl": "pickle",
    ".pickle": "pickle",
    ".joblib": "joblib",
}
DEFAULT_MAX_BYTES = 2 * 1024**3

_PICKLE_HINT = "to trust it add it to [model] allowed_globals in mrm.toml or pass --allow-global"

# numpy and scipy are large and hold file I/O (numpy.load unpickles), raw-memory views
# (stride tricks), code generators and file deleters (scipy.odr). Of them, only the packages
# that hold the data types fitted models keep may be imported: arrays and dtypes, random
# state, masked arrays (search results), sparse matrices, splines, special functions.
_NUMPY_SCIPY = (
    *("numpy._core", "numpy.core", "numpy.dtypes", "numpy.random", "numpy.ma"),
    *("scipy.sparse", "scipy.interpolate", "scipy.special"),
)
_NUMPY_SCIPY_TEXT = (
    "of numpy and scipy only arrays, dtypes, random state, masked arrays, sparse matrices, "
    "interpolators and special functions are allowed"
)

# Module path parts that no fitted model needs, and why each is off limits. scikit-learn is
# otherwise allowed throughout; the scipy.stats entry is for a clearer message.
_EXCLUDED: dict[str, str] = {
    **dict.fromkeys(
        ("tests", "testing", "_testing", "testutils", "conftest", "estimator_checks"),
        "test helpers, some of which run subprocesses",
    ),
    "datasets": "dataset helpers download and write files",
    **dict.fromkeys(("externals", "_build_utils", "__check_build"), "vendored and build code"),
    **dict.fromkeys(("_examples", "_precompute"), "scripts that load libraries on import"),
    "_config": "a model must not change scikit-learn's global settings",
    "callback": "callbacks open listeners and connect to addresses kept in their state",
    "stats": "scipy.stats distributions exec() code kept in their pickled state",
}

# Globals allowed by exact name, because the classes rule below does not cover them.
_EXACT = frozenset(
    {
        # Protocols 2 and 3 have no opcodes for these and spell them as calls.
        "builtins.set",
        "builtins.frozenset",
        "builtins.bytes",
        "_codecs.encode",  # protocol 2 bytes: encode(text, "latin1")
        "builtins.slice",  # ColumnTransformer column specs such as slice(0, 3)
        # numpy's array, scalar and masked-array reconstructors.
        "numpy._core.multiarray._reconstruct",
        "numpy._core.multiarray.scalar",
        "numpy._core.numeric._frombuffer",
        "numpy.ma.core._mareconstruct",
        # random_state objects: these only instantiate a BitGenerator or SeedSequence.
        "numpy.random._pickle.__randomstate_ctor",
        "numpy.random._pickle.__generator_ctor",
        "numpy.random._pickle.__bit_generator_ctor",
        "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
        # FeatureAgglomeration's pooling_func: plain reductions.
        *("numpy.mean", "numpy.median", "numpy.max", "numpy.min", "numpy.sum"),
        "scipy._lib.array_api_compat.numpy._aliases.asarray",  # held by SplineTransformer
        "joblib.numpy_pickle.NumpyArrayWrapper",  # joblib's placeholder for an array
    }
)
# Other functions (a model may hold one, e.g. SelectKBest's score_func) only from these
# packages of pure computations: elsewhere scikit-learn has a file writer
# (tree.export_graphviz) and an import-anything helper (utils._set_output).
_FUNCTION_PACKAGES = (
    *("sklearn.metrics", "sklearn.feature_selection", "sklearn.preprocessing"),
    "sklearn.cluster",  # BisectingKMeans keeps its k-means routine
)
# numpy 2 renamed numpy.core to numpy._core; numpy 1 pickles name the reconstructors
# by the old name, which now warns.
_NUMPY_CORE = "numpy._core" if importlib.util.find_spec("numpy._core") else "numpy.core"


@dataclass(frozen=True)
class LoadedModel:
    estimator: object
    path: Path
    format: Format
    """From the file's extension; any pickle may hold joblib's array format."""
    sha256: str
    """Lowercase hex sha256 of exactly the bytes that were loaded."""
    size: int


def load_model(
    path: Path, *, extra_allowed: Sequence[str] = (), max_bytes: int = DEFAULT_MAX_BYTES
) -> LoadedModel:
    """Load a fitted estimator from `path`, refusing anything the allow-list does not cover.

    `extra_allowed` names further globals (pickle) or types (skops) to trust, as
    "module.qualname". Every refusal is a DeployError with a one-line message.
    """
    for entry in extra_allowed:
        if "." not in entry or not all(p.isidentifier() for p in entry.split(".")):
            raise DeployError(
                f"allowed global {entry!r} is not module.qualname (e.g. pkg.mod.Clip)"
            )
    data, fmt = _read(path, max_bytes)
    policy = _Policy(str(path), frozenset(extra_allowed))
    obj = _load_skops(data, policy) if fmt == "skops" else _unpickle(data, fmt, policy)
    _check_graph(obj, policy)
    if not (callable(getattr(obj, "fit", None)) and callable(getattr(obj, "predict", None))):
        raise DeployError(
            f"{path}: holds a {_type_name(obj)}, not a scikit-learn estimator "
            "(it has no fit and predict methods)"
        )
    return LoadedModel(obj, path, fmt, hashlib.sha256(data).hexdigest(), len(data))


def _read(path: Path, max_bytes: int) -> tuple[bytes, Format]:
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DeployError(f"{path}: no such file") from None
    except OSError as e:
        raise DeployError(f"{path}: {e.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise DeployError(f"{path}: is a directory, not a model file")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DeployError(
            f"{path}: unsupported model file type {path.suffix or '(no extension)'} "
            f"(supported: {', '.join(FORMATS)})"
        )
    too_big = f"{path}: larger than the {_size_text(max_bytes)} limit for model files"
    if info.st_size > max_bytes:
        raise DeployError(too_big)
    try:
        # One read: what is hashed is exactly what is loaded, even if the file changes.
        with path.open("rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        raise DeployError(f"{path}: cannot read it: {e.strerror}") from None
    if len(data) > max_bytes:
        raise DeployError(too_big)
    if not data:
        raise DeployError(f"{path}: the file is empty")
    return data, fmt


class _NotAllowed(Exception):
    """Why a global is refused: completes "…, which is not allowed (<why>; …)"."""


class _Unimportable(Exception):
    """Why a global that would be allowed could not be found."""


@dataclass(frozen=True)
class _Policy:
    display: str
    extra: frozenset[str]

    def resolve(self, module: str, name: str) -> Any:
        """The object a pickle names, if allowed; a DeployError before anything runs if not."""
        shown = f"{module}.{name}"
        if module == "numpy.core" or module.startswith("numpy.core."):
            renamed = _NUMPY_CORE + module.removeprefix("numpy.core")
            module = renamed if f"{renamed}.{name}" in _EXACT else module
        qualified = f"{module}.{name}"
        try:
            if qualified in self.extra or qualified in _EXACT:
                return _lookup(module, name)
            return _allowed_object(module, name)
        except _NotAllowed as e:
            why = f"which is not allowed ({e}; {_PICKLE_HINT})"
        except _Unimportable as e:
            why = f"which cannot be imported here ({e})"
        raise self.refuse(f"it references {shown}, {why}")

    def allows_type_name(self, fullname: str) -> bool:
        """Whether a skops type name ("module.qualname", split unknown) is allowed."""
        if fullname in self.extra or fullname in _EXACT:
            return True
        parts = fullname.split(".")
        for i in range(len(parts) - 1, 0, -1):  # longest module first, as pickle would name it
            try:
                _allowed_object(".".join(parts[:i]), ".".join(parts[i:]))
            except _NotAllowed:
                return False
            except _Unimportable:
                continue  # the module may be a shorter prefix
            return True
        return False

    def refuse(self, why: str) -> DeployError:
        return DeployError(f"refusing to load {self.display}: {why}")


def _allowed_object(module: str, name: str) -> Any:
    _check_module(module)  # before importing it: an import runs the module's code
    if any(p.startswith("__") and p.endswith("__") for p in name.split(".")):
        raise _NotAllowed("it reaches a dunder attribute")
    obj = _lookup(module, name)
    home = getattr(obj, "__module__", None)  # where it is defined, past re-exports
    home = home if isinstance(home, str) and home else module
    _check_module(home)
    if isinstance(obj, type):
        if issubclass(obj, np.memmap):
            raise _NotAllowed("numpy.memmap creates and overwrites files")
        return obj
    if "." not in name and (
        isinstance(obj, np.ufunc)  # elementwise math, nothing else
        or (_under(home, _FUNCTION_PACKAGES) and callable(obj))
        # Cython's reconstructors for scikit-learn's extension types: cls.__new__(cls).
        or (
            home.startswith("sklearn.") and (name == "newObj" or name.startswith("__pyx_unpickle_"))
        )
    ):
        return obj
    raise _NotAllowed(
        "of functions only ufuncs, array reconstructors and those in "
        f"{', '.join(_FUNCTION_PACKAGES)} are allowed"
    )


def _check_module(module: str) -> None:
    root = module.partition(".")[0]
    if root not in ("sklearn", "numpy", "scipy"):
        raise _NotAllowed("allowed: scikit-learn, numpy, scipy")
    for part in module.split("."):
        if part in _EXCLUDED:
            raise _NotAllowed(f"{module} is off limits: {_EXCLUDED[part]}")
    if root != "sklearn" and module != root and not _under(module, _NUMPY_SCIPY):
        raise _NotAllowed(_NUMPY_SCIPY_TEXT)


def _under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _lookup(module: str, name: str) -> Any:
    try:
        obj: Any = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # an import can fail in any way at all; report it, don't crash
        raise _Unimportable(f"{type(e).__name__}: {e}") from None
    return obj


class _RestrictedUnpickler(NumpyUnpickler):  # type: ignore[misc]
    """joblib's unpickler (pure Python, which reads plain pickles too), restricted."""

    dispatch = NumpyUnpickler.dispatch.copy()

    def __init__(self, stream: io.BufferedIOBase, policy: _Policy) -> None:
        super().__init__("", stream, ensure_native_byte_order=True)
        self.policy = policy

    def find_class(self, module: str, name: str) -> Any:
        sys.audit("pickle.find_class", module, name)
        if self.proto < 3:  # Python 2 names, as the stdlib unpickler maps them
            module, name = _compat_pickle.NAME_MAPPING.get((module, name), (module, name))
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        return self.policy.resolve(module, name)

    def load_build(self) -> None:
        # Replaces joblib's, which reads object arrays with a plain, unchecked Unpickler.
        target, state = self.stack[-2], self.stack[-1]
        if _is_code(target):
            raise self.policy.refuse(f"it sets attributes on {_name(target)}")
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):
            _check_names(state[1], target, self.policy)  # setattr() state: __class__ and such
        pickle._Unpickler.dispatch[pickle.BUILD[0]](self)
        if isinstance(target, NumpyArrayWrapper):
            self.stack[-1] = self._read_array(target)
        else:
            _check_attributes(target, self.policy)

    dispatch[pickle.BUILD[0]] = load_build

    def _read_array(self, wrapper: Any) -> Any:
        if not isinstance(wrapper.dtype, np.dtype):
            raise self.policy.refuse("a joblib array header has no valid dtype")
        if wrapper.dtype.hasobject:  # the items follow as a pickle of their own
            return _RestrictedUnpickler(self.file_handle, self.policy).load()
        return wrapper.read(self, self.ensure_native_byte_order)

    def load_setitems(self) -> None:
        super().load_setitems()
        _check_attributes(self.stack[-1], self.policy)

    def load_setitem(self) -> None:
        super().load_setitem()
        _check_attributes(self.stack[-1], self.policy)

    dispatch[pickle.SETITEMS[0]] = load_setitems
    dispatch[pickle.SETITEM[0]] = load_setitem


def _unpickle(data: bytes, fmt: Format, policy: _Policy) -> object:
    if data.startswith(b"ZF"):
        raise policy.refuse("it was written by joblib < 0.10; save it again with joblib.dump")
    try:
        with _validate_fileobject_and_memmap(io.BytesIO(data), policy.display) as (stream, _):
            return _RestrictedUnpickler(stream, policy).load()
    except DeployError:
        raise
    except Exception as e:  # corrupt input breaks pickle in many ways; all mean the same
        raise _unreadable(policy, fmt, e) from None


def _load_skops(data: bytes, policy: _Policy) -> object:
    try:
        untrusted: list[str] = skops.io.get_untrusted_types(data=data)
    except Exception as e:  # a corrupt zip or schema fails in many ways; all mean the same
        raise _unreadable(policy, "skops", e) from None
    refused = [t for t in untrusted if not policy.allows_type_name(t)]
    if refused:
        raise policy.refuse(
            f"it contains types that are not trusted: {', '.join(refused)} (to trust them add "
            "them to [model] trusted_types in mrm.toml or pass --trust-type)"
        )
    try:
        return skops.io.loads(data, trusted=untrusted)
    except Exception as e:
        raise _unreadable(policy, "skops", e) from None


def _check_attributes(obj: object, policy: _Policy) -> None:
    """Refuse dunder names held as instance data (attributes, or a Bunch's keys)."""
    state = getattr(obj, "__dict__", None)
    if isinstance(state, dict) and not _is_code(obj):
        _check_names(state, obj, policy)
    if isinstance(obj, dict) and type(obj) is not dict:  # dict subclasses may expose keys
        _check_names(obj, obj, policy)


def _check_names(names: dict[Any, Any], owner: object, policy: _Policy) -> None:
    for n in names:
        if isinstance(n, str) and n.startswith("__") and n.endswith("__"):
            raise policy.refuse(
                f"it gives a {_type_name(owner)} the attribute {n}, which no fitted model has"
            )


def _check_graph(root: object, policy: _Policy) -> None:
    """Run `_check_attributes` over everything reachable from the loaded object."""
    seen: set[int] = set()
    todo = [root]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, str | bytes | int | float | type):
            continue
        seen.add(id(obj))
        _check_attributes(obj, policy)
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                todo.extend(obj.ravel().tolist())
        elif isinstance(obj, dict):
            todo.extend(obj.keys())
            todo.extend(obj.values())
        elif isinstance(obj, list | tuple | set | frozenset):
            todo.extend(obj)
        state = getattr(obj, "__dict__", None)
        if isinstance(state, dict) and not _is_code(obj):
            todo.extend(state.values())


def _is_code(obj: object) -> bool:
    """Classes and functions: their `__dict__` is code's, not a model's state."""
    return isinstance(obj, type | np.ufunc) or inspect.isroutine(obj)


def _unreadable(policy: _Policy, fmt: str, e: Exception) -> DeployError:
    detail = " ".join(str(e).split())[:200] or "no detail"
    return DeployError(
        f"{policy.display}: not a readable {fmt} file, or truncated ({type(e).__name__}: {detail})"
    )


def _name(obj: object) -> str:
    """module.qualname of a class or function ("dict" for builtins)."""
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", repr(obj))
    return qualname if module in (None, "builtins") else f"{module}.{qualname}"


def _type_name(obj: object) -> str:
    return _name(type(obj))


def _size_text(n: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"
