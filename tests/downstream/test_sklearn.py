"""mnn.sklearn: scikit-learn's estimator checks, array API dispatch, and the objective itself.

* Every check of ``sklearn.utils.estimator_checks`` passes for both estimators, and
  a check may skip only for a device or library that this machine lacks (and, on
  NumPy 1.x, the array API check on array-api-strict's device1, which scikit-learn's
  checker cannot read back there).
* Inside ``config_context(array_api_dispatch=True)`` they train and predict on the
  namespace and device of X (array-api-strict on a fake second device, torch-cpu,
  CUDA where present), alone, in a ``Pipeline`` and in ``GridSearchCV``.
* The loss and its gradients equal scikit-learn's own MLP's for the same weights
  and data, and ``loss_curve_`` reports that loss.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import subprocess
import sys
from unittest import SkipTest

import numpy as np
import pytest
from helpers import ROOT, import_benchmark

# scikit-learn's array API dispatch refuses to start unless SciPy saw this before its import.
os.environ.setdefault("SCIPY_ARRAY_API", "1")
sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_classification, make_regression  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.neural_network import MLPClassifier as SklearnClassifier  # noqa: E402
from sklearn.neural_network import MLPRegressor as SklearnRegressor  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import MinMaxScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from mnn.backends import Placement  # noqa: E402
from mnn.errors import PlacementError  # noqa: E402
from mnn.sklearn import MLPClassifier, MLPRegressor  # noqa: E402

NUMPY_1 = int(np.__version__.split(".")[0]) < 2

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

#: Checks of check_estimator expected to fail, with the reason: none.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {"MLPClassifier": {}, "MLPRegressor": {}}
#: Why a check may skip here: a device or library this machine lacks, or a method that
#: MLPClassifier does not have (scikit-learn's own MLPClassifier has no decision_function).
ABSENT = re.compile(r"is not installed|requires cuda|no XPU device|MPS device test"
                    r"|does not have a decision_function method")


# --- scikit-learn's estimator checks --------------------------------------------------


@parametrize_with_checks([MLPClassifier(), MLPRegressor()], xfail_strict=True,
                         expected_failed_checks=lambda e: EXPECTED_FAILED_CHECKS[type(e).__name__])
def test_scikit_learn_estimator_check(estimator, check):
    if (NUMPY_1 and getattr(check, "func", check).__name__ == "check_array_api_input"
            and check.keywords.get("device_name") == "device1"):
        pytest.skip("scikit-learn's check moves the fitted attributes to NumPy with "
                    "numpy.from_dlpack(device=), which NumPy 1.x lacks, and its fallback "
                    "numpy.asarray cannot read array-api-strict's device1")
    try:
        check(estimator)
    except SkipTest as skip:
        assert ABSENT.search(str(skip)), f"skipped for a reason other than an absent " \
                                         f"device or library: {skip}"
        pytest.skip(str(skip))


def test_the_guide_lists_the_expected_failures():
    """docs/sklearn.md says which checks are expected to fail, and why: this list."""
    guide = " ".join((ROOT / "docs" / "sklearn.md").read_text(encoding="utf-8").split())
    listed = {(name, check, reason) for name, checks in EXPECTED_FAILED_CHECKS.items()
              for check, reason in checks.items()}
    for name, check, reason in listed:
        assert f"| {name} | `{check}` | {reason} |" in guide
    assert ("none is expected to fail" in guide) == (not listed)


# --- array API dispatch ---------------------------------------------------------------


def _namespaces():
    """(name, (xp, device)) for array-api-strict, torch-cpu and torch-cuda, or why absent."""
    import importlib.util

    strict = pytest.param("array_api_strict-device1", id="array_api_strict-device1")
    if importlib.util.find_spec("array_api_strict") is None:
        strict = pytest.param(strict.values[0], marks=pytest.mark.skip(
            reason="array-api-strict is not installed"))
    params = [strict]
    for device in ("cpu", "cuda"):
        reason = None
        if importlib.util.find_spec("torch") is None:
            reason = "torch is not installed"
        elif device == "cuda":
            import torch

            if not torch.cuda.is_available():
                reason = "no CUDA device here (torch.cuda.is_available() is False)"
        marks = [pytest.mark.skip(reason=reason)] if reason else []
        params.append(pytest.param(f"torch-{device}", marks=marks, id=f"torch-{device}"))
    return params


@pytest.fixture(params=_namespaces())
def where(request) -> Placement:
    """Where the arrays of a dispatch test live: a float64 placement."""
    library, device = request.param.split("-")
    return Placement.named(library, device, "float64")


def _blobs(n=120, classes=3, seed=0):
    x, y = make_classification(n_samples=n, n_features=6, n_informative=4, n_classes=classes,
                               random_state=seed)
    return x, y


def _same_placement(array, where: Placement) -> bool:
    here = Placement.of(array)
    return here.backend is where.backend and here.device == where.device


@pytest.mark.parametrize("make", [MLPClassifier, MLPRegressor])
def test_dispatch_trains_where_x_lives_and_predicts_there(where, make):
    x, y = _blobs() if make is MLPClassifier else make_regression(120, 6, random_state=0)
    on_host = make(hidden_layer_sizes=(8,), max_iter=15, random_state=0).fit(x, y)
    with sklearn.config_context(array_api_dispatch=True):
        model = make(hidden_layer_sizes=(8,), max_iter=15, random_state=0)
        model.fit(where.from_host(x), where.from_host(y))
        assert model.network_.layers[0].placement == where  # the layers adopted X's placement
        for method in ("predict", "predict_proba", "predict_log_proba"):
            if not hasattr(model, method):
                continue
            out = getattr(model, method)(where.from_host(x))
            assert _same_placement(out, where), f"{method} returned {Placement.of(out)}"
            # the same seed trains the same network: NumPy and this library agree
            np.testing.assert_allclose(where.to_host(out), getattr(on_host, method)(x),
                                       rtol=1e-6, atol=1e-9)
    assert model.loss_curve_ == pytest.approx(on_host.loss_curve_, rel=1e-9)


@pytest.mark.filterwarnings("error::RuntimeWarning")  # none, from anyone's arithmetic
def test_dispatch_in_a_pipeline_and_a_grid_search(where):
    """The scaler is MinMaxScaler: StandardScaler's first fit divides 0 by 0 (in
    scikit-learn's _incremental_mean_and_var, a NaN it then discards), and silences the
    warning only for NumPy arrays, so under array-api-strict every fit warns."""
    x, y = _blobs(n=150)
    with sklearn.config_context(array_api_dispatch=True):
        X, Y = where.from_host(x), where.from_host(y)
        pipe = make_pipeline(MinMaxScaler(feature_range=(-1, 1)),
                             MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.03,
                                           max_iter=80, random_state=0))
        search = GridSearchCV(pipe, {"mlpclassifier__alpha": [1e-4, 1.0]}, cv=3).fit(X, Y)
        predicted = search.predict(X)
        assert _same_placement(predicted, where)
        assert search.best_estimator_[-1].network_.layers[0].placement == where
        assert search.score(X, Y) > 0.8


def test_without_dispatch_arrays_become_numpy_as_in_scikit_learn(where):
    x, y = _blobs()
    if where.backend.name == "array_api_strict" or where.device != where.backend.device("cpu"):
        pytest.skip(f"np.asarray refuses {where}: scikit-learn needs dispatch for them")
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
    model.fit(where.from_host(x), where.from_host(y))
    assert model.network_.layers[0].placement.backend.name == "numpy"
    assert isinstance(model.predict(x), np.ndarray)


def test_mixed_namespaces_follow_x(where):
    """y (and partial_fit's classes) from NumPy while X lives elsewhere: all follow X."""
    x, y = _blobs()
    with sklearn.config_context(array_api_dispatch=True):
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
        model.partial_fit(where.from_host(x), y, classes=[0, 1, 2])
        model.partial_fit(where.from_host(x), where.from_host(y))
        assert _same_placement(model.classes_, where)
        assert _same_placement(model.predict(where.from_host(x)), where)
        with pytest.raises(ValueError, match=r"y has classes not in classes_ \[0, 1, 2\]: \[7\]"):
            model.partial_fit(where.from_host(x[:3]), where.from_host(np.array([0, 7, 1])))


def test_predicting_on_another_namespace_names_both(where):
    x, y = _blobs()
    with sklearn.config_context(array_api_dispatch=True):
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0)
        model.fit(where.from_host(x), where.from_host(y))
        with pytest.raises(PlacementError, match=r"MLPClassifier\.predict\(\) must use the "
                           r"same namespace and the same device.*numpy array"):
            model.predict(x)


def test_move_estimator_to_numpy_and_back(where):
    from sklearn.utils._array_api import move_estimator_to

    x, y = _blobs()
    with sklearn.config_context(array_api_dispatch=True):
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, random_state=0)
        model.fit(where.from_host(x), where.from_host(y))
        expected = where.to_host(model.predict_proba(where.from_host(x)))
        on_numpy = move_estimator_to(model, np, "cpu")
        assert on_numpy.network_.layers[0].placement.backend.name == "numpy"
        assert model.network_.layers[0].placement == where  # the original stays
        np.testing.assert_allclose(on_numpy.predict_proba(x), expected, rtol=1e-12)
        assert isinstance(on_numpy.predict(x), np.ndarray)
        back = move_estimator_to(on_numpy, where.xp, where.device)
        assert _same_placement(back.predict(where.from_host(x)), where)


def test_pickle_keeps_the_placement_and_the_optimizer_state(where):
    x, y = _blobs()
    with sklearn.config_context(array_api_dispatch=True):
        X, Y = where.from_host(x), where.from_host(y)
        model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, random_state=0).fit(X, Y)
        copy = pickle.loads(pickle.dumps(model))
        assert copy.network_.layers[0].placement == where
        for m in (model, copy):  # Adam's moments and step count came along: the same next step
            m.partial_fit(X, Y)
        for a, b in zip(model.coefs_ + model.intercepts_, copy.coefs_ + copy.intercepts_,
                        strict=True):
            np.testing.assert_array_equal(where.to_host(a), where.to_host(b))


# --- the objective is scikit-learn's ----------------------------------------------------


def _sklearn_loss_and_gradients(reference, ours, x, targets):
    """scikit-learn's loss and gradients (its private ``_backprop``) at the weights of ``ours``."""
    reference.coefs_ = [np.array(w) for w in ours.coefs_]
    reference.intercepts_ = [np.array(b) for b in ours.intercepts_]
    reference.n_layers_, reference.n_outputs_ = ours.n_layers_, targets.shape[1]
    reference.out_activation_ = "softmax" if isinstance(ours, MLPClassifier) else "identity"
    n = len(reference.coefs_)
    loss, coef_grads, intercept_grads = reference._backprop(
        x, targets, None, [x] + [None] * n, [None] * n,
        [np.empty_like(w) for w in reference.coefs_],
        [np.empty_like(b) for b in reference.intercepts_])
    return loss, coef_grads + intercept_grads


@pytest.mark.parametrize("activation", ["relu", "tanh", "logistic", "identity"])
@pytest.mark.parametrize("make", [MLPClassifier, MLPRegressor])
def test_loss_and_gradients_equal_scikit_learns(make, activation):
    """One step's loss (Eq. (1) of BaseMLP) and gradients, penalty included, at the same
    weights and batch, for every activation: scikit-learn's own code is the reference."""
    params = {"hidden_layer_sizes": (7, 5), "alpha": 0.3, "activation": activation}
    if make is MLPClassifier:
        x, y = _blobs(n=40, classes=3)
        targets = np.eye(3)[y]
        reference = SklearnClassifier(**params)
    else:
        x, y = make_regression(40, 6, random_state=0)
        y = y / 100
        targets = y[:, None]
        reference = SklearnRegressor(**params)
    ours = make(**params, max_iter=1, random_state=0).fit(x, y)
    expected_loss, expected_grads = _sklearn_loss_and_gradients(reference, ours, x, targets)
    ours.optimizer_.lr = 0.0  # a step that moves nothing: the gradients stay to be read
    codes, _ = ours._encode_targets(y, Placement.of(x), first=False, incremental=True,
                                    classes=None)
    loss = ours._step(np, ours._loss_layer(), x, codes)
    layers = ours._linear_layers()
    grads = [layer.grads["w"].T for layer in layers] + [layer.grads["b"] for layer in layers]
    assert float(loss) == pytest.approx(expected_loss, rel=1e-12)
    for got, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-14)


def _epoch_loss(make, x, y, **params):
    """``loss_`` of one full-batch epoch that starts from the weights of a first fit; and
    those weights' predictions."""
    model = make(max_iter=1, batch_size=len(x), shuffle=False, random_state=0, **params)
    model.fit(x, y)
    before = {"coefs": [np.array(w) for w in model.coefs_],
              "proba": (model.predict_proba(x) if hasattr(model, "predict_proba")
                        else model.predict(x))}
    model.set_params(warm_start=True).fit(x, y)
    return model.loss_, before


def _penalty(coefs, alpha, n):
    return alpha / (2 * n) * sum(float(np.sum(w * w)) for w in coefs)


def test_loss_curve_is_the_mean_cross_entropy_plus_the_penalty():
    x, y = _blobs(n=60)
    loss, before = _epoch_loss(MLPClassifier, x, y, hidden_layer_sizes=(5,), alpha=0.5)
    cross_entropy = -np.mean(np.log(before["proba"][np.arange(len(y)), y]))
    assert loss == pytest.approx(cross_entropy + _penalty(before["coefs"], 0.5, len(y)),
                                 rel=1e-12)


def test_multilabel_loss_sums_the_labels_binary_cross_entropies():
    x, y = make_classification(n_samples=60, n_features=6, random_state=0)
    labels = np.stack([y, 1 - y, (x[:, 0] > 0).astype(int)], axis=1)
    loss, before = _epoch_loss(MLPClassifier, x, labels, hidden_layer_sizes=(5,), alpha=0.5)
    p = before["proba"]
    binary = -(labels * np.log(p) + (1 - labels) * np.log(1 - p)).sum(axis=1).mean()  # Eq. (3)
    assert loss == pytest.approx(binary + _penalty(before["coefs"], 0.5, len(x)), rel=1e-10)


def test_regression_loss_is_half_the_mean_squared_error_over_every_output():
    x, y = make_regression(60, 6, n_targets=3, random_state=0)
    y = y / 100
    loss, before = _epoch_loss(MLPRegressor, x, y, hidden_layer_sizes=(5,), alpha=0.5)
    half_mse = 0.5 * np.mean((before["proba"] - y) ** 2)  # Eq. (1) of MLPRegressor
    assert loss == pytest.approx(half_mse + _penalty(before["coefs"], 0.5, len(x)), rel=1e-12)


# --- what a scikit-learn user expects --------------------------------------------------


def test_importing_mnn_does_not_import_scikit_learn(tmp_path):
    code = ("import sys, mnn; loaded = [m for m in ('sklearn', 'scipy') if m in sys.modules]; "
            "assert not loaded, loaded; import mnn.sklearn; assert 'sklearn' in sys.modules")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_digits_accuracy_is_within_a_point_of_scikit_learns():
    """The same hidden sizes, defaults and seeds: mean test accuracy over three seeds.
    (The benchmark, benchmarks/sklearn_digits.py, measures more seeds and the fit time.)"""
    from mnn.data import load_digits

    train, test = load_digits()
    ours, theirs = (np.mean([
        make(hidden_layer_sizes=(64,), max_iter=100, random_state=seed)
        .fit(train.inputs, train.labels).score(test.inputs, test.labels) for seed in range(3)])
        for make in (MLPClassifier, SklearnClassifier))
    assert abs(ours - theirs) <= 0.01, f"mnn.sklearn {ours:.4f}, scikit-learn {theirs:.4f}"
    assert ours > 0.95


def test_partial_fit_needs_the_classes_first_then_one_epoch_a_call():
    x, y = _blobs()
    model = MLPClassifier(hidden_layer_sizes=(8,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        model.partial_fit(x, y)
    model.partial_fit(x[y < 2], y[y < 2], classes=[0, 1, 2])
    model.partial_fit(x, y)
    assert model.n_iter_ == 1 and model.t_ == (y < 2).sum() + len(y)
    assert len(model.loss_curve_) == 2
    np.testing.assert_array_equal(model.classes_, [0, 1, 2])
    with pytest.raises(ValueError, match=r"y has classes not in classes_ \[0, 1, 2\]: \[7\]"):
        model.partial_fit(x[:3], np.array([0, 7, 1]))
    with pytest.raises(ValueError, match="differs from the classes of the first call"):
        model.partial_fit(x, y, classes=[0, 1])


def test_warm_start_continues_and_keeps_the_classes():
    x, y = _blobs()
    model = MLPClassifier(hidden_layer_sizes=(8,), max_iter=5, warm_start=True, random_state=0)
    model.fit(x, y)
    first = [np.array(w) for w in model.coefs_]
    model.fit(x, y)
    assert len(model.loss_curve_) == 10 and model.loss_curve_[5] < model.loss_curve_[0]
    assert not np.array_equal(first[0], model.coefs_[0])
    with pytest.raises(ValueError, match="warm_start needs y to have the classes"):
        model.fit(x, np.where(y == 2, 5, y))
    fresh = clone(model).set_params(warm_start=False).fit(x, y)
    assert len(fresh.loss_curve_) == 5


def test_string_labels_come_back_as_strings():
    x, y = _blobs()
    names = np.array(["cat", "dog", "emu"], dtype=object)[y]
    model = MLPClassifier(hidden_layer_sizes=(16,), learning_rate_init=0.01, max_iter=60,
                          random_state=0).fit(x, names)
    assert list(model.classes_) == ["cat", "dog", "emu"]
    assert set(model.predict(x)) <= {"cat", "dog", "emu"}
    assert model.score(x, names) > 0.8


def test_early_stopping_scores_a_held_out_split_and_keeps_the_best():
    x, y = _blobs(n=300)
    model = MLPClassifier(hidden_layer_sizes=(16,), early_stopping=True, n_iter_no_change=3,
                          max_iter=500, random_state=0).fit(x, y)
    assert model.n_iter_ < 500 and len(model.validation_scores_) == model.n_iter_
    assert model.best_validation_score_ == max(model.validation_scores_)
    assert model.best_loss_ is None
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        model.partial_fit(x, y)
    regressor = MLPRegressor(early_stopping=True, max_iter=50, random_state=0)
    regressor.fit(*make_regression(100, 4, random_state=0))
    assert len(regressor.validation_scores_) == regressor.n_iter_


def test_training_stops_when_the_loss_stops_improving_as_in_scikit_learn():
    x, y = _blobs()
    params = {"hidden_layer_sizes": (8,), "tol": 10.0, "n_iter_no_change": 2, "max_iter": 50}
    model = MLPClassifier(**params, random_state=0).fit(x, y)
    # the first epoch improves on inf, no later one by 10: more than 2 of those stop it
    assert model.n_iter_ == 4 == SklearnClassifier(**params).fit(x, y).n_iter_
    assert model.best_loss_ == min(model.loss_curve_)


def test_sgd_learning_rate_schedules_as_in_scikit_learn():
    x, y = _blobs()
    model = MLPClassifier(solver="sgd", learning_rate="invscaling", learning_rate_init=0.1,
                          max_iter=4, random_state=0).fit(x, y)
    assert model.optimizer_.lr == pytest.approx(0.1 / (model.t_ + 1) ** 0.5)
    params = {"solver": "sgd", "learning_rate": "adaptive", "learning_rate_init": 0.1,
              "tol": 10.0, "n_iter_no_change": 1, "max_iter": 100}
    adaptive = MLPClassifier(**params, random_state=0).fit(x, y)
    # no epoch improves by 10: every second epoch divides the rate by 5, until below 1e-6
    assert adaptive.optimizer_.lr < 1e-6 <= 5 * adaptive.optimizer_.lr
    assert adaptive.n_iter_ == SklearnClassifier(**params).fit(x, y).n_iter_ < 100


def test_ill_chosen_parameters_are_named():
    x, y = _blobs()
    for params, message in [
            ({"activation": "softplus"}, r"activation to be one of \('identity', 'logistic', "
                                         r"'tanh', 'relu'\), got 'softplus'"),
            ({"solver": "lbfgs"}, r"solver to be one of \('adam', 'sgd'\), got 'lbfgs'"),
            ({"alpha": -1.0}, r"alpha in \[0, inf\), got -1.0"),
            ({"learning_rate_init": 0.0}, r"learning_rate_init in \(0, inf\)"),
            ({"hidden_layer_sizes": (10, 0)}, "every entry of hidden_layer_sizes"),
            ({"hidden_layer_sizes": "big"}, "hidden_layer_sizes"),
            ({"batch_size": 0}, "batch_size to be a positive int"),
            ({"validation_fraction": 1.0}, r"validation_fraction in \(0, 1\)"),
            ({"shuffle": "yes"}, "shuffle to be True or False")]:
        with pytest.raises(ValueError, match=message):
            MLPClassifier(**params).fit(x, y)


def test_no_hidden_layer_and_the_identity_activation():
    x, y = _blobs()
    linear = MLPClassifier(hidden_layer_sizes=(), max_iter=50, random_state=0).fit(x, y)
    assert [type(layer).__name__ for layer in linear.network_] == ["LinearLayer"]
    deep = MLPClassifier(hidden_layer_sizes=(4, 3), activation="identity", max_iter=2).fit(x, y)
    assert [type(layer).__name__ for layer in deep.network_] == ["LinearLayer"] * 3
    assert [w.shape for w in deep.coefs_] == [(6, 4), (4, 3), (3, 3)]  # scikit-learn's layout
    for activation, name in (("relu", "ReluLayer"), ("tanh", "Tanh"), ("logistic", "Sigmoid")):
        model = MLPClassifier(hidden_layer_sizes=(4,), activation=activation, max_iter=2).fit(x, y)
        assert [type(layer).__name__ for layer in model.network_] == \
            ["LinearLayer", name, "LinearLayer"]


@pytest.mark.parametrize(("activation", "factor"), [("tanh", 6.0), ("logistic", 2.0)])
def test_initial_weights_are_drawn_in_scikit_learns_range(activation, factor):
    """Uniform on [-a, a], a = sqrt(factor / (n_in + n_out)): scikit-learn's factor is 2
    for the logistic activation and 6 for the others."""
    x, y = _blobs()
    model = MLPClassifier(hidden_layer_sizes=(50,), activation=activation,
                          learning_rate_init=1e-12, max_iter=1, random_state=0).fit(x, y)
    for w in model.coefs_:  # one step of 1e-12: still the initial weights to 1e-9
        bound = np.sqrt(factor / sum(w.shape))
        assert 0.9 * bound < np.abs(w).max() <= bound + 1e-9


def test_verbose_prints_the_loss_of_each_epoch(capsys):
    x, y = _blobs()
    MLPClassifier(hidden_layer_sizes=(4,), max_iter=2, verbose=True).fit(x, y)
    assert re.findall(r"Iteration (\d), loss = \d+\.\d{8}", capsys.readouterr().out) == ["1", "2"]


def test_max_iter_reached_warns_as_scikit_learn_does():
    x, y = _blobs()
    with pytest.warns(ConvergenceWarning, match=r"maximum iterations \(2\) reached"):
        MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(x, y)


def test_float32_data_trains_in_float32():
    x, y = _blobs()
    model = MLPClassifier(hidden_layer_sizes=(4,), max_iter=2).fit(x.astype(np.float32), y)
    assert model.coefs_[0].dtype == np.float32
    assert model.predict_proba(x).dtype == np.float32  # float64 X is cast to the network's


def test_digits_benchmark_runs_beside_scikit_learn_and_reports_both(tmp_path):
    """benchmarks/sklearn_digits.py, in benchmarks/run.py's full run; here a tiny run of it."""
    bench, run = import_benchmark("sklearn_digits"), import_benchmark("run")
    assert ["benchmarks.sklearn_digits"] in run.comparisons(quick=False, gpu=False)
    out = tmp_path / "digits.json"
    bench.main(["--repeats", "2", "--warmup", "0", "--max-iter", "3", "--json", str(out)])
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["results"]] == ["scikit-learn", "mnn.sklearn"]
    for result in report["results"]:
        assert result["median_ms"] > 0 and result["ratio"] > 0
        assert result["epochs"] == [3, 3, 3]  # the calibrating fit and two timed ones
        assert all(0 < a <= 100 for a in result["accuracy_percent"])
    ours, theirs = report["results"][1], report["results"][0]
    assert report["accuracy_difference_points"] == pytest.approx(
        ours["mean_accuracy_percent"] - theirs["mean_accuracy_percent"])
    markdown = tmp_path / "benchmarks.md"
    run.write_markdown({"command": "python benchmarks/run.py", "date": "today",
                        "environment": {}, "comparisons": [report]}, markdown)
    text = markdown.read_text()
    assert "| mnn.sklearn |" in text and report["notes"][0] in text
