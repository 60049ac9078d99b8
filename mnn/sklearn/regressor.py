r"""``MLPRegressor``: scikit-learn's multi-layer perceptron regressor, made of mnn layers."""

from __future__ import annotations

import math
from typing import Any

import array_api_compat
from sklearn.base import RegressorMixin
from sklearn.metrics import r2_score

from mnn.backends import Placement
from mnn.layers import MSELossLayer
from mnn.sklearn.mlp import BaseMLP, placed


class MLPRegressor(RegressorMixin, BaseMLP):
    r"""Multi-layer perceptron regressor: mnn layers trained on the squared error.

    The parameters are those of scikit-learn's ``MLPRegressor`` that mnn has the
    pieces for (see ``BaseMLP``). ``fit(X, y)`` trains where ``X`` lives: on NumPy
    arrays, or inside ``sklearn.config_context(array_api_dispatch=True)`` on torch,
    CuPy or array-api-strict arrays, on their device; ``predict`` then returns arrays
    of that library and device. ``y`` has one column or several (multi-output); the
    targets take the dtype of ``X``.

    Loss
    ----
    scikit-learn's data term is half the squared error, averaged over samples and
    outputs. With :math:`n` samples and :math:`d` outputs,

    .. math::
        J_\text{data} = \frac{1}{2nd} \sum_{i=1}^{n} \sum_{f=1}^{d} (z_{if} - y_{if})^2
            = \frac{1}{2d}\, L_\text{MSE},  \qquad (1)

    where :math:`L_\text{MSE}` is ``MSELossLayer``'s loss (summed over the outputs,
    mean over the batch). The factor is a constant, so the gradient is the layer's
    gradient times the same factor:

    .. math::
        \frac{\partial J_\text{data}}{\partial z_{if}} = \frac{1}{2d}\,
            \frac{\partial L_\text{MSE}}{\partial z_{if}} = \frac{z_{if} - y_{if}}{nd}.  \qquad (2)

    So ``loss_curve_`` and ``tol`` mean what they mean in scikit-learn.

    Not supported: ``sample_weight`` (mnn's losses take plain means), sparse ``X``,
    ``loss="poisson"``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X: Any, y: Any) -> MLPRegressor:
        """Train a fresh network on ``X`` (``n_samples, n_features``) and targets ``y``
        (or continue from the last fit with ``warm_start=True``)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any) -> MLPRegressor:
        """One epoch over ``X`` and ``y``."""
        return self._fit(X, y, incremental=True)

    def predict(self, X: Any) -> Any:
        """The predicted targets: ``(n_samples,)`` for one output, else ``(n_samples, d)``."""
        outputs = self._outputs(X, "predict")
        if self.n_outputs_ == 1:
            return array_api_compat.array_namespace(outputs).reshape(outputs, (-1,))
        return outputs

    # --- what BaseMLP asks of it ---------------------------------------------------------

    def _encode_targets(self, y, where: Placement, *, first: bool, incremental: bool,
                        classes) -> tuple[Any, int]:
        y = placed(y, where)
        xp = array_api_compat.array_namespace(y)
        y = xp.astype(y, where.dtype)
        if y.ndim == 1:
            y = xp.reshape(y, (-1, 1))
        if first:
            self.n_outputs_ = int(y.shape[1])
        elif y.shape[1] != self.n_outputs_:
            raise ValueError(f"{self._name}: fitted on {self.n_outputs_} outputs, got targets "
                             f"with {y.shape[1]}")
        return y, self.n_outputs_

    def _loss_layer(self) -> MSELossLayer:
        return MSELossLayer()

    def _data_loss(self, loss_layer, xp, outputs, targets):
        scale = 1.0 / (2 * outputs.shape[1])
        loss = loss_layer(outputs, targets)
        return loss * scale, loss_layer.backward() * scale  # Eqs. (1) and (2)

    def _validation_score(self, outputs, targets) -> float:
        xp = array_api_compat.array_namespace(outputs)
        if not bool(xp.all(xp.isfinite(outputs))):  # r2_score refuses them; scikit-learn: nan
            return math.nan
        return float(r2_score(targets, outputs))
