r"""``BaseMLP``: what ``MLPClassifier`` and ``MLPRegressor`` share. Parameters, network, training.

The estimators follow scikit-learn's ``MLPClassifier`` and ``MLPRegressor``: the same
parameter names and defaults (where mnn has the piece), the same objective, the same
stopping rule and the same fitted attributes. The network is mnn's: ``LinearLayer`` and
an activation layer (``ReluLayer``, ``Tanh`` or ``Sigmoid``) in a ``SequentialLayers``,
trained by ``mnn.optim.Adam`` or ``mnn.optim.SGD`` on the mini-batches of
``mnn.data.Batches``, in ``mnn.training``'s loop (the epochs; the stopping rule below is
this module's). It lives where the training data lives: the first forward moves the
layers' parameters to the library, device and dtype of ``X``.

Objective
---------
For a mini-batch of :math:`n` samples with network outputs :math:`z_i`, targets
:math:`y_i` and weight matrices :math:`W^{(1)}, \dots, W^{(L)}`, one step minimises the
data term of the subclass (cross-entropy, or half the squared error) plus
scikit-learn's L2 penalty on the weights (not the biases):

.. math::
    J = \frac{1}{n} \sum_{i=1}^{n} \ell(z_i, y_i)
        + \frac{\alpha}{2n} \sum_{l=1}^{L} \lVert W^{(l)} \rVert_F^2  \qquad (1)

Gradient of the penalty
-----------------------
The penalty is a sum of squares, one per weight, and
:math:`\partial (w^2) / \partial w = 2w`, so

.. math::
    \frac{\partial J}{\partial W^{(l)}} = \frac{\partial J_\text{data}}{\partial W^{(l)}}
        + \frac{\alpha}{n} W^{(l)}  \qquad (2)

The network's backward pass leaves the data term in ``grads["w"]``; (2) adds the
penalty to it in place, in one pass where the library can (the adapter's
``add_scaled``). This is not the optimizers' ``weight_decay``, which decays the
biases too and does not divide by the batch size.

Stopping
--------
As in scikit-learn: after each epoch ``loss_curve_`` gets the mean of (1) over the
epoch's samples. Without early stopping, an epoch that does not lower the best
training loss by more than ``tol`` counts as no improvement; with early stopping, an
epoch whose validation score is not above the best one by ``tol``. After more than
``n_iter_no_change`` such epochs in a row, training stops (SGD with
``learning_rate="adaptive"`` divides its rate by 5 instead, until the rate is below
1e-6). Early stopping then restores the weights of the best validation score.
"""

from __future__ import annotations

import copy
import functools
import math
import numbers
import warnings
from typing import Any, cast

import array_api_compat
import numpy as np
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from mnn import optim, training
from mnn.backends import Placement, dtype_name, to_host
from mnn.base import BaseLayer
from mnn.checks import positive_int
from mnn.data import Batches
from mnn.errors import PlacementError, describe
from mnn.layers import LinearLayer, ReluLayer, SequentialLayers, Sigmoid, Tanh

#: scikit-learn's activations and the layer of each, after every hidden layer (None: none).
ACTIVATIONS: dict[str, type[BaseLayer] | None] = {
    "identity": None, "logistic": Sigmoid, "tanh": Tanh, "relu": ReluLayer}
SOLVERS = ("adam", "sgd")
SCHEDULES = ("constant", "invscaling", "adaptive")
#: SGD with learning_rate="adaptive" stops once its rate falls below this (scikit-learn's value).
MIN_ADAPTIVE_RATE = 1e-6


class BaseMLP(BaseEstimator):
    """A multi-layer perceptron made of mnn layers, with scikit-learn's estimator API.

    Parameters (scikit-learn's names and defaults):

    * ``hidden_layer_sizes`` (``(100,)``): the width of each hidden layer; ``()`` for none.
    * ``activation`` (``"relu"``): after each hidden layer, ``"relu"`` (``ReluLayer``),
      ``"tanh"`` (``Tanh``), ``"logistic"`` (``Sigmoid``) or ``"identity"`` (nothing).
    * ``solver`` (``"adam"``): ``"adam"`` (``mnn.optim.Adam``) or ``"sgd"``
      (``mnn.optim.SGD``). There is no ``"lbfgs"``: mnn trains on mini-batches.
    * ``alpha`` (``1e-4``): the L2 penalty of Eq. (1).
    * ``batch_size`` (``"auto"``, which is ``min(200, n_samples)``).
    * ``learning_rate`` (``"constant"``): SGD's schedule, ``"constant"``,
      ``"invscaling"`` (``learning_rate_init / (t + 1) ** power_t`` after each epoch, with
      ``t`` the samples seen) or ``"adaptive"`` (divided by 5 where training would stop).
    * ``learning_rate_init`` (``1e-3``), ``power_t`` (``0.5``).
    * ``max_iter`` (``200``): epochs at most; ``shuffle`` (``True``): reshuffle each epoch.
    * ``random_state`` (``None``): seeds the initial weights, the shuffles and the
      validation split (an int, a ``numpy.random.RandomState`` or ``None``).
    * ``tol`` (``1e-4``), ``n_iter_no_change`` (``10``): the stopping rule above.
    * ``verbose`` (``False``): print the loss after each epoch.
    * ``warm_start`` (``False``): ``fit`` continues from the weights of the last fit.
    * ``momentum`` (``0.9``), ``nesterovs_momentum`` (``True``): SGD's momentum.
    * ``early_stopping`` (``False``), ``validation_fraction`` (``0.1``): hold out that
      fraction of the training data (stratified for classifiers) and stop on its score.
    * ``beta_1`` (``0.9``), ``beta_2`` (``0.999``), ``epsilon`` (``1e-8``): Adam's.

    Fitted attributes: ``network_`` (the ``SequentialLayers``), ``optimizer_``,
    ``coefs_`` and ``intercepts_`` (views of its weights, scikit-learn's layout),
    ``loss_`` and ``loss_curve_`` (Eq. (1) per epoch), ``best_loss_``,
    ``validation_scores_`` and ``best_validation_score_`` (early stopping), ``n_iter_``
    (epochs of the last call), ``t_`` (samples seen), ``n_layers_``, ``n_outputs_``,
    ``n_features_in_`` and ``feature_names_in_``.
    """

    network_: SequentialLayers
    loss_curve_: list[float]
    optimizer_: Any  # an mnn.optim.Adam or SGD; the schedules set its lr
    validation_scores_: list[float] | None
    best_validation_score_: float | None
    best_loss_: float | None

    def __init__(self, hidden_layer_sizes: Any = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 1e-4, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 1e-3,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool = False,
                 warm_start: bool = False, momentum: float = 0.9,
                 nesterovs_momentum: bool = True, early_stopping: bool = False,
                 validation_fraction: float = 0.1, beta_1: float = 0.9, beta_2: float = 0.999,
                 epsilon: float = 1e-8, n_iter_no_change: int | float = 10) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change

    # --- what the subclasses write -----------------------------------------------------

    def _encode_targets(self, y, where: Placement, *, first: bool, incremental: bool,
                        classes) -> tuple[Any, int]:
        """The targets as the loss takes them, at ``where`` (the placement of X), and the
        number of network outputs. ``first``: the call starts a fresh network;
        ``incremental``: the call is a ``partial_fit``."""
        raise NotImplementedError

    def _loss_layer(self) -> BaseLayer:
        raise NotImplementedError

    def _data_loss(self, loss_layer: BaseLayer, xp, outputs, targets) -> tuple[Any, Any]:
        """The data term of Eq. (1) for one batch, and its gradient with respect to outputs."""
        raise NotImplementedError

    def _validation_score(self, outputs, targets) -> float:
        """The score (accuracy, R^2) of the network's outputs on held-out targets."""
        raise NotImplementedError

    # --- scikit-learn's API --------------------------------------------------------------

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.array_api_support = True  # trains and predicts in the namespace and device of X
        return tags

    @property
    def coefs_(self) -> list:
        """The weight matrices, ``(n_in, n_out)`` each as in scikit-learn (views, not copies)."""
        check_is_fitted(self)
        return [layer.params["w"].T for layer in self._linear_layers()]

    @property
    def intercepts_(self) -> list:
        """The bias vectors, one per layer (the arrays themselves)."""
        check_is_fitted(self)
        return [layer.params["b"] for layer in self._linear_layers()]

    # --- fitting -------------------------------------------------------------------------

    def _fit(self, X, y, *, incremental: bool, classes=None):
        hidden_sizes = self._check_params()
        if incremental and self.early_stopping:
            raise ValueError(f"{self._name}: partial_fit does not support early_stopping=True")
        first = not hasattr(self, "network_") or not (incremental or self.warm_start)
        X, y = validate_data(self, X, y, reset=first, dtype="numeric", multi_output=True,
                             y_numeric=is_regressor(self))
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)  # scikit-learn warns about a column vector y too
        if first:
            X = _floating(X)
        else:  # the network lives somewhere already: X must come from there
            X = self._placed_like_network(X, "partial_fit" if incremental else "fit")
        generator = np.random.default_rng(check_random_state(self.random_state).randint(2**31 - 1))
        targets, n_outputs = self._encode_targets(y, Placement.of(X), first=first,
                                                  incremental=incremental, classes=classes)
        if first:
            self._initialize([X.shape[1], *hidden_sizes, n_outputs], generator)
        self._run_epochs(X, targets, generator, incremental)
        return self

    def _initialize(self, sizes: list[int], generator: np.random.Generator) -> None:
        """A fresh network (host float64 weights until the first forward) and optimizer."""
        activation = ACTIVATIONS[self.activation]
        layers: list[BaseLayer] = []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            # Glorot-uniform weights, as scikit-learn draws them (for ReLU too), on
            # [-a, a] with a = sqrt(6 / (n_in + n_out)); for the logistic activation
            # scikit-learn takes a = sqrt(2 / (n_in + n_out)), 1 / sqrt(3) of that
            linear = LinearLayer(n_in, n_out, init="glorot", rng=generator)
            if self.activation == "logistic":
                linear.params["w"] = linear.params["w"] / math.sqrt(3.0)
            layers.append(linear)
            if i < len(sizes) - 2 and activation is not None:
                layers.append(activation())
        self.network_ = SequentialLayers(layers)
        self.network_.input_grad = False  # the inputs are data: skip their gradient
        if self.solver == "adam":
            self.optimizer_ = optim.Adam(self.network_, lr=self.learning_rate_init,
                                         betas=(self.beta_1, self.beta_2), eps=self.epsilon)
        else:
            self.optimizer_ = optim.SGD(self.network_, lr=self.learning_rate_init,
                                        momentum=self.momentum,
                                        nesterov=self.nesterovs_momentum and self.momentum > 0)
        self.n_layers_ = len(sizes)
        self.n_iter_, self.t_, self.loss_curve_ = 0, 0, []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_, self.best_validation_score_ = [], -math.inf
            self.best_loss_ = None
        else:
            self.validation_scores_, self.best_validation_score_ = None, None
            self.best_loss_ = math.inf

    def _run_epochs(self, X, targets, generator: np.random.Generator, incremental: bool) -> None:
        """``max_iter`` epochs (one for ``partial_fit``) in ``mnn.training``'s loop, with
        scikit-learn's stopping rule after each."""
        xp = array_api_compat.array_namespace(X)
        if self.early_stopping:
            X, targets, X_val, targets_val = self._hold_out(xp, X, targets, generator)
        n_samples = int(X.shape[0])
        batches = Batches(X, targets, batch_size=self._batch_size(n_samples),
                          shuffle=self.shuffle, rng=generator)
        best_weights = None

        def after_epoch(epoch: training.Round) -> bool:
            """Record the epoch; True stops training."""
            nonlocal best_weights
            self.n_iter_ += 1
            self.t_ += n_samples
            self.loss_ = epoch.loss  # _step's losses were summed on the device: one read
            self.loss_curve_.append(self.loss_)
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}")
            if not self.early_stopping:
                self._count_no_improvement()
            elif self._record_validation_score(self._validation_score(self.network_(X_val),
                                                                       targets_val)):
                best_weights = {name: xp.asarray(w, copy=True)
                                for name, w in self.network_.state_dict().items()}
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self.optimizer_.lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            return self._no_improvement_count > self.n_iter_no_change and self._stop_or_slow_down()

        self.n_iter_ = 0
        step = functools.partial(self._step, xp, self._loss_layer())
        epochs = training.epochs(batches, 1 if incremental else self.max_iter)
        finished = training.train(step, epochs, after_epoch)
        if not (finished.stopped or incremental):
            warnings.warn(f"{self._name}: maximum iterations ({self.max_iter}) reached and "
                          f"the optimization hasn't converged yet.", ConvergenceWarning,
                          stacklevel=4)
        if best_weights is not None:
            self.network_.load_weights(best_weights)
        self._check_finite()

    def _step(self, xp, loss_layer: BaseLayer, inputs, targets):
        """One step of the optimizer on one batch; returns Eq. (1) before the step, as an
        array where the network lives (the loop sums them there)."""
        self.network_.zero_grads()
        outputs = self.network_(inputs)
        loss, gradient = self._data_loss(loss_layer, xp, outputs, targets)
        self.network_.backward(gradient)
        if self.alpha != 0.0:
            loss = loss + self._add_penalty(xp, inputs.shape[0])
        self.optimizer_.step()
        return loss

    def _add_penalty(self, xp, n: int):
        """Add the penalty's gradient, Eq. (2), to the weights' gradients; return its value."""
        scale = self.alpha / n
        squares = 0.0
        for layer in self._linear_layers():
            w = layer.params["w"]
            layer.grads["w"] = layer.placement.backend.add_scaled(layer.grads["w"], scale, w)
            flat = xp.reshape(w, (-1,))  # a view: the sum of squares is one dot product
            squares = squares + flat @ flat
        return squares * (scale / 2)  # Eq. (1), second term

    def _count_no_improvement(self) -> None:
        """Without early stopping, the training loss decides (scikit-learn's rule)."""
        last, best = self.loss_curve_[-1], cast(float, self.best_loss_)
        improved = last <= best - self.tol
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        self.best_loss_ = min(best, last)

    def _record_validation_score(self, score: float) -> bool:
        """With early stopping, the validation score decides; True when it is the best so
        far (its weights are the ones to keep)."""
        cast(list, self.validation_scores_).append(score)
        if self.verbose:
            print(f"Validation score: {score:f}")
        best = cast(float, self.best_validation_score_)
        improved = score >= best + self.tol
        self._no_improvement_count = 0 if improved else self._no_improvement_count + 1
        if score > best:
            self.best_validation_score_ = score
            return True
        return False

    def _stop_or_slow_down(self) -> bool:
        """Training stopped improving: stop, or (adaptive SGD) divide the rate by 5."""
        if (self.solver == "sgd" and self.learning_rate == "adaptive"
                and self.optimizer_.lr > MIN_ADAPTIVE_RATE):
            self.optimizer_.lr /= 5.0
            self._no_improvement_count = 0
            if self.verbose:
                print(f"Setting learning rate to {self.optimizer_.lr:f}")
            return False
        if self.verbose:
            print(f"No improvement by more than tol={self.tol} for {self.n_iter_no_change} "
                  f"consecutive epochs: stopping.")
        return True

    def _hold_out(self, xp, X, targets, generator: np.random.Generator) -> tuple:
        """Split off ``validation_fraction`` of the data (stratified for classifiers).

        The split is drawn on the host from the indices (and, to stratify, the labels);
        the data is cut where it lives, as ``Batches`` does.
        """
        stratify = to_host(targets) if is_classifier(self) and targets.ndim == 1 else None
        train, held_out = train_test_split(
            np.arange(X.shape[0]), test_size=self.validation_fraction, stratify=stratify,
            random_state=int(generator.integers(2**31 - 1)))
        if held_out.shape[0] < 2:
            raise ValueError(f"{self._name}: the validation set is too small "
                             f"({held_out.shape[0]} sample). Increase validation_fraction or "
                             f"the size of the data set.")
        where = Placement.of(X)
        train, held_out = where.from_host(train), where.from_host(held_out)
        return (xp.take(X, train, axis=0), xp.take(targets, train, axis=0),
                xp.take(X, held_out, axis=0), xp.take(targets, held_out, axis=0))

    def _batch_size(self, n_samples: int) -> int:
        if self.batch_size == "auto":
            return min(200, n_samples)
        size = int(self.batch_size)
        if size > n_samples:
            warnings.warn(f"{self._name}: batch_size={size} is larger than the {n_samples} "
                          f"samples; it is clipped to {n_samples}.", stacklevel=5)
        return min(size, n_samples)

    def _check_finite(self) -> None:
        for name, w in self.network_.state_dict().items():
            xp = array_api_compat.array_namespace(w)
            if not bool(xp.all(xp.isfinite(w))):
                raise ValueError(f"{self._name}: the solver produced non-finite weights "
                                 f"({name!r}). The input data may contain large values and "
                                 f"need to be preprocessed (e.g. StandardScaler).")

    # --- predicting ----------------------------------------------------------------------

    def _outputs(self, X, method: str):
        """The network's outputs for ``X``, after scikit-learn's input checks."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype="numeric")
        return self.network_(self._placed_like_network(X, method))

    def _placed_like_network(self, X, method: str):
        """``X`` in the network's dtype; an error if it comes from another library or device.

        The message carries scikit-learn's wording ("must use the same namespace"), which
        its array API checks look for.
        """
        fitted, given = self._placement, Placement.of(X)
        if given.backend is not fitted.backend or given.device != fitted.device:
            raise PlacementError(
                f"Inputs passed to {self._name}.{method}() must use the same namespace and the "
                f"same device as those passed to fit(): the network holds {fitted}, but X is "
                f"a {describe(X)}. Move X there, or move the estimator with scikit-learn's "
                f"move_estimator_to (sklearn.utils._array_api).")
        return X if X.dtype == fitted.dtype else fitted.xp.astype(X, fitted.dtype)

    @property
    def _placement(self) -> Placement:
        return self.network_.layers[0].placement

    def _linear_layers(self) -> list[LinearLayer]:
        return [layer for layer in self.network_.layers if isinstance(layer, LinearLayer)]

    @property
    def _name(self) -> str:
        return type(self).__name__

    # --- moving ---------------------------------------------------------------------------

    def __sklearn_array_api_convert__(self, converter):
        """A copy on the namespace and device that ``converter`` moves arrays to.

        scikit-learn's ``move_estimator_to(estimator, xp, device)`` calls this: fit on a
        GPU, then move the estimator to predict on NumPy arrays (or the reverse). The
        network moves with ``to()``; the optimizer's state follows at its next step.
        (Pickling needs nothing of its own: layers and optimizers pickle themselves.)
        """
        moved = copy.deepcopy(self)
        if hasattr(self, "network_"):
            probe = converter(np.zeros(1, dtype=dtype_name(self._placement.dtype)))
            backend, device, dtype = Placement.of(probe).names()
            moved.network_.to(xp=backend, device=device, dtype=dtype)
            classes = getattr(self, "classes_", None)
            if classes is not None and not _is_text(classes):
                moved.classes_ = converter(classes)
        return moved

    # --- parameters ----------------------------------------------------------------------

    def _check_params(self) -> list[int]:
        """Check every parameter (a ``ValueError`` naming it); return the hidden sizes."""
        name = self._name
        for key, choices in (("activation", tuple(ACTIVATIONS)), ("solver", SOLVERS),
                             ("learning_rate", SCHEDULES)):
            if getattr(self, key) not in choices:
                raise ValueError(f"{name}: expected {key} to be one of {choices}, "
                                 f"got {getattr(self, key)!r}")
        for key, low, high, closed in (
                ("alpha", 0, math.inf, "[)"), ("learning_rate_init", 0, math.inf, "()"),
                ("power_t", 0, math.inf, "[)"), ("tol", 0, math.inf, "[)"),
                ("momentum", 0, 1, "[]"), ("validation_fraction", 0, 1, "()"),
                ("beta_1", 0, 1, "[)"), ("beta_2", 0, 1, "[)"), ("epsilon", 0, math.inf, "()")):
            _in_interval(name, key, getattr(self, key), low, high, closed)
        for key in ("shuffle", "warm_start", "nesterovs_momentum", "early_stopping"):
            if not isinstance(getattr(self, key), (bool, np.bool_)):
                raise ValueError(f"{name}: expected {key} to be True or False, "
                                 f"got {getattr(self, key)!r}")
        _count(name, "max_iter", self.max_iter)
        if self.n_iter_no_change != math.inf:
            _count(name, "n_iter_no_change", self.n_iter_no_change)
        if self.batch_size != "auto":
            _count(name, "batch_size", self.batch_size)
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else sizes
        try:
            return [_count(name, "every entry of hidden_layer_sizes", s) for s in sizes]
        except TypeError:
            raise ValueError(f"{name}: expected hidden_layer_sizes to be a positive int or a "
                             f"sequence of them, got {self.hidden_layer_sizes!r}") from None


def _count(owner: str, name: str, value) -> int:
    """A positive integer (NumPy integers too), as an int."""
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        value = int(value)
    return positive_int(owner, name, value)


def _in_interval(owner: str, name: str, value, low: float, high: float, closed: str) -> float:
    """``value`` as a float if it is a real number in the interval; ``closed`` is two
    brackets, ``"[)"`` for ``low <= value < high``."""
    interval = f"{closed[0]}{low}, {high}{closed[1]}"
    if (isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real)
            or math.isnan(value)):
        raise ValueError(f"{owner}: expected {name} to be a real number in {interval}, "
                         f"got {value!r}")
    number = float(value)
    above = number >= low if closed[0] == "[" else number > low
    below = number <= high if closed[1] == "]" else number < high
    if not (above and below):
        raise ValueError(f"{owner}: expected {name} in {interval}, got {value!r}")
    return number


def _floating(X):
    """``X`` if it is floating point (float32 stays float32), else ``X`` in float64."""
    xp = array_api_compat.array_namespace(X)
    return X if xp.isdtype(X.dtype, "real floating") else xp.astype(X, xp.float64)


def _is_text(array) -> bool:
    """Labels that only NumPy holds (strings, Python objects): they stay on the host."""
    return isinstance(array, np.ndarray) and array.dtype.kind in "OSU"


def placed(array, where: Placement):
    """``array`` on the library and device of ``where``, in its own dtype (through the host
    when it lives elsewhere: the targets of ``fit`` may come from another library than X)."""
    here = Placement.of(array)
    if here.backend is where.backend and here.device == where.device:
        return array
    host = here.to_host(array)
    return where.from_host(host, dtype=host.dtype.name)
