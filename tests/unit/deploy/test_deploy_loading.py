"""mrm.deploy.loading: legitimate models load and predict the same; hostile files never run."""

from __future__ import annotations

import datetime
import hashlib
import os
import pickle
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib  # type: ignore[import-untyped,unused-ignore]
import numpy as np
import pandas as pd  # type: ignore[import-untyped,unused-ignore]
import pytest
import scipy.stats  # type: ignore[import-untyped,unused-ignore]
import skops.io  # type: ignore[import-untyped,unused-ignore]
from sklearn._loss.loss import HalfBinomialLoss  # type: ignore[import-untyped,unused-ignore]
from sklearn.base import BaseEstimator, TransformerMixin  # type: ignore[import-untyped,unused-ignore]
from sklearn.compose import ColumnTransformer  # type: ignore[import-untyped,unused-ignore]
from sklearn.ensemble import (  # type: ignore[import-untyped,unused-ignore]
    HistGradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped,unused-ignore]
from sklearn.pipeline import Pipeline  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # type: ignore[import-untyped,unused-ignore]
from sklearn.preprocessing._function_transformer import (  # type: ignore[import-untyped,unused-ignore]
    _identity,
)
from sklearn.utils import Bunch  # type: ignore[import-untyped,unused-ignore]

from mrm.deploy.errors import DeployError
from mrm.deploy.loading import DEFAULT_MAX_BYTES, LoadedModel, load_model

RNG = np.random.RandomState(0)
X = RNG.rand(80, 4)
Y = (X[:, 0] + X[:, 1] > 1).astype(int)
FRAME = pd.DataFrame(
    {"age": X[:, 0] * 80, "income": X[:, 1] * 1e5, "city": RNG.choice(["a", "b", "c"], 80)}
)


def _models() -> dict[str, tuple[Any, Any]]:
    pipeline = Pipeline(
        [
            (
                "prep",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), ["age", "income"]),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), ["city"]),
                    ]
                ),
            ),
            ("clf", LogisticRegression()),
        ]
    )
    return {
        "logistic": (LogisticRegression().fit(X, Y), X),
        "forest": (RandomForestClassifier(n_estimators=5, random_state=0).fit(X, Y), X),
        "hgb": (HistGradientBoostingClassifier(max_iter=5, random_state=0).fit(X, Y), X),
        "pipeline": (pipeline.fit(FRAME, Y), FRAME),
    }


MODELS = _models()


def _save(kind: str, model: object, path: Path) -> None:
    if kind == "skops":
        skops.io.dump(model, path)
    elif kind.startswith("joblib"):
        compress = {
            "joblib": 0,
            "joblib-zlib": 3,
            "joblib-gzip": ("gzip", 3),
            "joblib-xz": ("xz", 1),
        }
        joblib.dump(model, path, compress=compress[kind])
    else:
        path.write_bytes(pickle.dumps(model, protocol=int(kind.removeprefix("pickle-p"))))


SUFFIX = {"skops": ".skops", "pickle-p2": ".pkl", "pickle-p5": ".pickle"}


def _predict(loaded: LoadedModel, data: Any) -> Any:
    estimator: Any = loaded.estimator
    return estimator.predict(data)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize(
    "kind", ["pickle-p2", "pickle-p5", "joblib", "joblib-zlib", "joblib-gzip", "joblib-xz", "skops"]
)
def test_legitimate_models_load_and_predict_identically(
    tmp_path: Path, name: str, kind: str
) -> None:
    model, data = MODELS[name]
    path = tmp_path / f"model{SUFFIX.get(kind, '.joblib')}"
    _save(kind, model, path)
    loaded = load_model(path)
    estimator: Any = loaded.estimator
    assert type(estimator) is type(model)
    np.testing.assert_array_equal(estimator.predict(data), model.predict(data))
    np.testing.assert_array_equal(estimator.predict_proba(data), model.predict_proba(data))
    assert loaded.size == path.stat().st_size
    assert loaded.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.path == path
    assert loaded.format == {".skops": "skops", ".joblib": "joblib"}.get(path.suffix, "pickle")


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_every_pickle_protocol_from_2_loads(tmp_path: Path, protocol: int) -> None:
    model, data = MODELS["pipeline"]
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps(model, protocol=protocol))
    np.testing.assert_array_equal(_predict(load_model(path), data), model.predict(data))


def test_joblib_output_saved_as_pkl_loads(tmp_path: Path) -> None:
    model, data = MODELS["forest"]
    joblib.dump(model, tmp_path / "model.pkl", compress=3)
    loaded = load_model(tmp_path / "model.pkl")
    np.testing.assert_array_equal(_predict(loaded, data), model.predict(data))


def test_numpy_1_names_load_without_deprecation_warnings(tmp_path: Path) -> None:
    # numpy 1 wrote numpy.core.*; pytest turns numpy 2's DeprecationWarning into an error.
    model, data = MODELS["logistic"]
    old = pickle.dumps(model, protocol=2).replace(b"numpy._core.", b"numpy.core.")
    assert b"numpy.core.multiarray\n_reconstruct" in old
    (tmp_path / "model.pkl").write_bytes(old)
    loaded = load_model(tmp_path / "model.pkl")
    np.testing.assert_array_equal(_predict(loaded, data), model.predict(data))


# --- Hostile pickles. Each carries a payload that creates a marker file; a control run
# --- with the standard unpickler shows the payload is live, then mrm must refuse it.


class _Reduce:
    def __init__(self, func: Callable[..., object], *args: object) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return self.func, self.args


def _touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _proto0_chain(first: str, marker: Path) -> bytes:
    """`getattr(first("os"), "system")("touch marker")`, with `first` the first global used."""
    module, name = first.rsplit(".", 1)
    return (
        f"c{module}\n{name}\n(S'os'\ntRp0\n0cbuiltins\ngetattr\n(g0\nS'system'\ntR"
        f"(S'touch {marker}'\ntR."
    ).encode()


PAYLOADS: dict[str, tuple[str, Callable[[Path], bytes]]] = {
    "os.system via __reduce__": (
        "posix.system",  # os.system is defined in posix, and pickle says so
        lambda m: pickle.dumps(_Reduce(os.system, f"touch {m}")),
    ),
    "os.system by name": ("os.system", lambda m: f"cos\nsystem\n(S'touch {m}'\ntR.".encode()),
    "subprocess.Popen": (
        "subprocess.Popen",
        lambda m: pickle.dumps(_Reduce(subprocess.Popen, ["touch", str(m)])),
    ),
    "builtins.eval": ("builtins.eval", lambda m: pickle.dumps(_Reduce(eval, _touch(m)))),
    "builtins.exec": ("builtins.exec", lambda m: pickle.dumps(_Reduce(exec, _touch(m)))),
    "builtins.__import__": (
        "builtins.__import__",
        lambda m: _proto0_chain("builtins.__import__", m),
    ),
    "importlib.import_module": (
        "importlib.import_module",
        lambda m: _proto0_chain("importlib.import_module", m),
    ),
    # Inside the allowed packages: numpy's old ufunc loader imports anything it is told to.
    "numpy.core._ufunc_reconstruct": (
        "numpy.core._ufunc_reconstruct",
        lambda m: (
            f"cnumpy.core\n_ufunc_reconstruct\n(S'posix'\nS'system'\ntR(S'touch {m}'\ntR.".encode()
        ),
    ),
    # numpy.testing's runstring is exec().
    "numpy.testing runstring": (
        "numpy.testing._private.utils.runstring",
        lambda m: f"cnumpy.testing._private.utils\nrunstring\n(S{_touch(m)!r}\n(dtR.".encode(),
    ),
}


def _run_control(payload: bytes) -> None:
    obj = pickle.loads(payload)  # the standard unpickler runs it
    if isinstance(obj, subprocess.Popen):
        obj.wait()


@pytest.mark.parametrize("case", list(PAYLOADS))
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, case: str) -> None:
    named, build = PAYLOADS[case]
    control = tmp_path / "control"
    _run_control(build(control))
    assert control.exists(), "the payload should be live, or this test proves nothing"

    marker = tmp_path / "marker"
    path = tmp_path / "model.pkl"
    path.write_bytes(build(marker))
    with pytest.raises(DeployError) as caught:
        load_model(path)
    assert not marker.exists()
    message = str(caught.value)
    assert message.startswith(
        f"refusing to load {path}: it references {named}, which is not allowed"
    )
    assert "[model] allowed_globals in mrm.toml" in message
    assert "\n" not in message
    assert caught.value.exit_code == 2


def test_refusal_names_the_global_as_the_issue_states(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    with pytest.raises(DeployError) as caught:
        load_model(path)
    assert str(caught.value) == (
        f"refusing to load {path}: it references os.system, which is not allowed "
        "(allowed: scikit-learn, numpy, scipy; to trust it add it to [model] allowed_globals "
        "in mrm.toml or pass --allow-global)"
    )


def test_scipy_stats_distribution_that_execs_its_state_is_refused(tmp_path: Path) -> None:
    # Only scipy globals, yet rv_generic.__setstate__ exec()s _parse_arg_template.
    control, marker = tmp_path / "control", tmp_path / "marker"

    def build(target: Path) -> bytes:
        evil = pickle.loads(pickle.dumps(scipy.stats.norm))
        evil._parse_arg_template = _touch(target) + "\n" + evil._parse_arg_template
        return pickle.dumps(evil)

    _run_control(build(control))
    assert control.exists()
    path = tmp_path / "model.pkl"
    path.write_bytes(build(marker))
    with pytest.raises(
        DeployError, match=r"scipy\.stats\._continuous_distns\.norm_gen.*off limits"
    ):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("kind", ["joblib", "joblib-zlib"])
def test_malicious_joblib_is_refused_without_running(tmp_path: Path, kind: str) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "model.joblib"
    _save(kind, {"model": MODELS["logistic"][0], "x": _Reduce(os.system, f"touch {marker}")}, path)
    with pytest.raises(DeployError, match=r"it references posix\.system, which is not allowed"):
        load_model(path)
    assert not marker.exists()


def test_malicious_item_in_a_joblib_object_array_is_refused(tmp_path: Path) -> None:
    # joblib pickles object arrays as a nested stream; it must get the same restrictions.
    marker = tmp_path / "marker"
    items = np.array([1, _Reduce(os.system, f"touch {marker}")], dtype=object)
    joblib.dump(items, tmp_path / "model.joblib")
    with pytest.raises(DeployError, match=r"posix\.system"):
        load_model(tmp_path / "model.joblib")
    assert not marker.exists()


NUMPY_SCIPY = "of numpy and scipy only arrays, dtypes"
FUNCTIONS = "of functions only ufuncs, array reconstructors and those in sklearn.metrics"


@pytest.mark.parametrize(
    ("module", "name", "why"),
    [
        ("numpy", "load", FUNCTIONS),  # allow_pickle=True unpickles any file
        ("numpy", "memmap", "creates and overwrites files"),
        ("numpy.lib._npyio_impl", "load", NUMPY_SCIPY),
        ("numpy.lib._stride_tricks_impl", "DummyArray", NUMPY_SCIPY),  # raw memory
        ("numpy.lib._stride_tricks_impl", "as_strided", NUMPY_SCIPY),
        ("numpy.random._examples.cffi.extending", "ffi", "load libraries on import"),
        ("numpy._core._methods", "_dump", FUNCTIONS),  # ndarray.dump writes any path
        ("sklearn.utils._testing", "assert_run_python_script_without_output", "subprocesses"),
        ("sklearn.tree._export", "export_graphviz", FUNCTIONS),  # writes any path
        ("sklearn.datasets._svmlight_format_io", "dump_svmlight_file", "write files"),
        ("sklearn._config", "set_config", "global settings"),
        ("sklearn.callback._scoring_monitor", "ScoringMonitor", "connect to addresses"),
        ("scipy._lib._uarray._backend", "unpickle_function", NUMPY_SCIPY),  # imports anything
        ("scipy.odr", "ODR", NUMPY_SCIPY),  # deletes the files it is given
        ("scipy.io", "savemat", NUMPY_SCIPY),
        ("scipy.sparse", "save_npz", FUNCTIONS),
        ("sklearn.base", "np.load", FUNCTIONS),  # reached through a re-export
        ("sklearn.base", "BaseEstimator.__init__.__globals__", "dunder"),
        ("sklearn.base", "BaseEstimator.set_params", FUNCTIONS),
    ],
)
def test_dangerous_globals_inside_allowed_packages_are_refused(
    tmp_path: Path, module: str, name: str, why: str
) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(f"c{module}\n{name}\n(tR.".encode())
    with pytest.raises(DeployError, match=rf"it references {module}\.{name}, .*{why}"):
        load_model(path)


class _PatchClass:
    """BUILD on a class: sets HalfBinomialLoss.predict_proba for the whole process."""

    def __reduce__(self) -> tuple[object, ...]:
        return _identity, (HalfBinomialLoss,), (None, {"predict_proba": np.log1p})


_PATCHED = (
    "import joblib, numpy as np, sys; from sklearn._loss.loss import HalfBinomialLoss as L; "
    "joblib.load(sys.argv[1]); print(L.predict_proba is np.log1p)"
)


@pytest.mark.parametrize("where", ["pickle", "joblib object array"])
def test_setting_attributes_on_a_class_is_refused(tmp_path: Path, where: str) -> None:
    # A plain load would silently change every binary HistGradientBoosting model's output.
    path = tmp_path / ("model.pkl" if where == "pickle" else "model.joblib")
    payload = {"model": MODELS["hgb"][0], "x": _PatchClass()}
    if where == "pickle":
        path.write_bytes(pickle.dumps(payload))
    else:  # joblib pickles object arrays as a nested stream; it gets the same checks
        joblib.dump(np.array([payload], dtype=object), path)
    control = subprocess.run(
        [sys.executable, "-c", _PATCHED, str(path)], capture_output=True, text=True, check=True
    )
    assert control.stdout.strip() == "True", "the payload should be live"
    before = HalfBinomialLoss.predict_proba
    with pytest.raises(DeployError, match=r"sets attributes on sklearn\._loss\.loss\.HalfBinomial"):
        load_model(path)
    assert HalfBinomialLoss.predict_proba is before


def _memory_view(model: Any) -> Any:
    """A copy of `model` that numpy would turn into a view of raw memory at address 0."""
    fake = pickle.loads(pickle.dumps(model))
    fake.__dict__["__array_interface__"] = {"data": (0, False), "shape": (8,), "typestr": "|u1"}
    return fake


@pytest.mark.parametrize("kind", ["pickle-p5", "joblib", "skops"])
def test_dunder_attributes_are_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"model{SUFFIX.get(kind, '.joblib')}"
    _save(kind, _memory_view(MODELS["logistic"][0]), path)
    with pytest.raises(DeployError, match=r"attribute __array_interface__, which no fitted"):
        load_model(path)


def test_dunder_keys_in_a_bunch_are_refused(tmp_path: Path) -> None:
    # Bunch serves keys as attributes, so a key is as good as an attribute to numpy.
    model = pickle.loads(pickle.dumps(MODELS["logistic"][0]))
    model.extra = Bunch(__array_interface__={"data": (0, False), "shape": (8,), "typestr": "|u1"})
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    with pytest.raises(DeployError, match=r"sklearn\.utils\._bunch\.Bunch the attribute __array"):
        load_model(tmp_path / "model.pkl")


# --- The user's own trust list.


class Clip(BaseEstimator, TransformerMixin):  # type: ignore[misc]
    def fit(self, x: Any, y: Any = None) -> Clip:
        return self

    def transform(self, x: Any) -> Any:
        return np.clip(x, 0, 1)


@pytest.mark.parametrize("kind", ["pickle-p5", "joblib", "skops"])
def test_an_extra_global_is_allowed_only_when_listed(tmp_path: Path, kind: str) -> None:
    model = pickle.loads(pickle.dumps(MODELS["logistic"][0]))
    model.trained_on = datetime.date(2024, 5, 1)
    path = tmp_path / f"model{SUFFIX.get(kind, '.joblib')}"
    _save(kind, model, path)
    with pytest.raises(DeployError, match=r"datetime\.date") as caught:
        load_model(path)
    hint = "--trust-type" if kind == "skops" else "[model] allowed_globals"
    assert hint in str(caught.value)
    with pytest.raises(DeployError, match=r"datetime\.date"):
        load_model(path, extra_allowed=["datetime.time"])
    estimator: Any = load_model(path, extra_allowed=["datetime.date"]).estimator
    assert estimator.trained_on == datetime.date(2024, 5, 1)


def test_a_custom_transformer_loads_only_when_listed(tmp_path: Path) -> None:
    model = Pipeline([("clip", Clip()), ("clf", LogisticRegression())]).fit(X, Y)
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(model))
    name = f"{__name__}.Clip"
    with pytest.raises(DeployError, match=rf"it references {name}, which is not allowed"):
        load_model(tmp_path / "model.pkl")
    loaded = load_model(tmp_path / "model.pkl", extra_allowed=[name])
    np.testing.assert_array_equal(_predict(loaded, X), model.predict(X))


def test_a_listed_global_that_cannot_be_imported_is_named(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"cmycorp.features\nClip\n)R.")
    with pytest.raises(DeployError, match=r"mycorp\.features\.Clip, which cannot be imported here"):
        load_model(tmp_path / "model.pkl", extra_allowed=["mycorp.features.Clip"])


@pytest.mark.parametrize("entry", ["Clip", "", "a..b", "a.b c", "1a.B"])
def test_malformed_extra_globals_are_refused(tmp_path: Path, entry: str) -> None:
    with pytest.raises(DeployError, match=r"is not module\.qualname"):
        load_model(tmp_path / "model.pkl", extra_allowed=[entry])


# --- Files that are not models.


def _one_line(path: Path, **kwargs: Any) -> str:
    with pytest.raises(DeployError) as caught:
        load_model(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert caught.value.exit_code == 2
    return message


def test_missing_file(tmp_path: Path) -> None:
    assert _one_line(tmp_path / "model.pkl") == f"{tmp_path / 'model.pkl'}: no such file"


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").mkdir()
    assert "is a directory" in _one_line(tmp_path / "model.pkl")


@pytest.mark.parametrize("name", ["model.h5", "model", "model.pkl.bak"])
def test_unknown_extension_names_the_supported_ones(tmp_path: Path, name: str) -> None:
    (tmp_path / name).write_bytes(pickle.dumps(MODELS["logistic"][0]))
    message = _one_line(tmp_path / name)
    assert "unsupported model file type" in message
    assert "supported: .skops, .pkl, .pickle, .joblib" in message


def test_over_the_default_size_limit(tmp_path: Path) -> None:
    with (tmp_path / "model.pkl").open("wb") as f:
        f.truncate(DEFAULT_MAX_BYTES + 1)  # sparse: nothing is written or read
    message = _one_line(tmp_path / "model.pkl")
    assert message.endswith("model.pkl: larger than the 2 GiB limit for model files")


def test_over_a_given_size_limit(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps(MODELS["forest"][0]))
    message = _one_line(tmp_path / "model.pkl", max_bytes=1536)
    assert message.endswith("larger than the 1.5 KiB limit for model files")


@pytest.mark.parametrize("suffix", [".pkl", ".joblib", ".skops"])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    (tmp_path / f"model{suffix}").write_bytes(b"")
    assert _one_line(tmp_path / f"model{suffix}").endswith("the file is empty")


@pytest.mark.parametrize("kind", ["pickle-p5", "pickle-p2", "joblib", "joblib-zlib", "skops"])
def test_truncated_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / f"model{SUFFIX.get(kind, '.joblib')}"
    _save(kind, MODELS["forest"][0], path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert "not a readable" in _one_line(path)


@pytest.mark.parametrize("suffix", [".pkl", ".joblib", ".skops"])
@pytest.mark.parametrize("content", [b"hello, world\n", bytes(range(256)) * 4, b"\x80\x05\xff."])
def test_corrupt_files(tmp_path: Path, suffix: str, content: bytes) -> None:
    (tmp_path / f"model{suffix}").write_bytes(content)
    assert "not a readable" in _one_line(tmp_path / f"model{suffix}")


def test_old_joblib_format_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"ZF0x00000000000000\n" + b"x" * 32)
    assert "joblib < 0.10" in _one_line(tmp_path / "model.joblib")


@pytest.mark.parametrize(
    ("obj", "named"),
    [
        ({"weights": [1, 2]}, "holds a dict,"),
        (np.arange(3), "holds a numpy.ndarray,"),
        (StandardScaler().fit(X), "holds a sklearn.preprocessing._data.StandardScaler,"),
    ],
)
@pytest.mark.parametrize("kind", ["pickle-p5", "skops"])
def test_not_an_estimator_names_its_type(
    tmp_path: Path, obj: object, named: str, kind: str
) -> None:
    path = tmp_path / f"model{SUFFIX[kind]}"
    _save(kind, obj, path)
    message = _one_line(path)
    assert named in message
    assert message.endswith("not a scikit-learn estimator (it has no fit and predict methods)")


def test_a_refused_module_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The decision comes before any import: importing is itself running the module's code.
    name = "mrm_probe_never_imported"
    (tmp_path / f"{name}.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / "model.pkl").write_bytes(f"c{name}\nx\n)R.".encode())
    with pytest.raises(DeployError, match=rf"it references {name}\.x, which is not allowed"):
        load_model(tmp_path / "model.pkl")
    assert name not in sys.modules
    assert not (tmp_path / "imported").exists()
