r"""``MLPClassifier``: scikit-learn's multi-layer perceptron classifier, made of mnn layers."""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.metrics import accuracy_score
from sklearn.utils.multiclass import check_classification_targets, type_of_target

from mnn.backends import Placement, to_host
from mnn.layers import CrossEntropyLossLayer
from mnn.layers.log_softmax import log_softmax
from mnn.layers.softmax import softmax
from mnn.sklearn.mlp import BaseMLP, _is_text, placed


class MLPClassifier(ClassifierMixin, BaseMLP):
    r"""Multi-layer perceptron classifier: mnn layers trained on the cross-entropy.

    The parameters are those of scikit-learn's ``MLPClassifier`` that mnn has the
    pieces for (see ``BaseMLP``). ``fit(X, y)`` trains where ``X`` lives: on NumPy
    arrays, or inside ``sklearn.config_context(array_api_dispatch=True)`` on torch,
    CuPy or array-api-strict arrays, on their device; ``predict`` then returns arrays
    of that library and device.

    Targets
    -------
    One label per sample (any labels, ``classes_`` holds them sorted), or a 0/1
    indicator matrix with one column per label (multilabel, ``classes_`` is
    ``0 .. n_labels - 1``).

    Single label: :math:`K` classes, :math:`K` outputs :math:`z_i`, and the data term
    of Eq. (1) of ``BaseMLP`` is ``CrossEntropyLossLayer``'s

    .. math::
        \ell(z_i, y_i) = -\log \operatorname{softmax}(z_i)_{y_i}.  \qquad (1)

    Multilabel: :math:`M` labels, each a yes/no question with two outputs, :math:`2M`
    in all, read as logits of shape ``(n, 2, M)`` (the ``no`` logits first). A softmax
    over two logits is the logistic function of their difference,

    .. math::
        \operatorname{softmax}(a, b)_2 = \frac{e^b}{e^a + e^b}
            = \frac{1}{1 + e^{-(b - a)}} = \sigma(b - a),  \qquad (2)

    so this is scikit-learn's logistic output, with one redundant logit per label.
    Its loss sums the binary cross-entropies of the labels:

    .. math::
        \ell(z_i, y_i) = -\sum_{m=1}^{M} \log \operatorname{softmax}(z_{i,\cdot,m})_{y_{im}}
            = M \cdot \mathrm{CE}_{\text{mean over } M}.  \qquad (3)

    ``CrossEntropyLossLayer`` with the class axis 1 averages over all :math:`nM`
    label positions; (3) multiplies its value and its gradient by :math:`M`.
    Two-class problems use (1) with :math:`K = 2`, the same model as (2).

    Not supported: ``sample_weight`` (mnn's losses take plain means), sparse ``X``.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags

    def fit(self, X: Any, y: Any) -> MLPClassifier:
        """Train a fresh network on ``X`` (``n_samples, n_features``) and labels ``y``
        (or continue from the last fit with ``warm_start=True``)."""
        return self._fit(X, y, incremental=False)

    def partial_fit(self, X: Any, y: Any, classes: Any = None) -> MLPClassifier:
        """One epoch over ``X`` and ``y``; the first call needs every class in ``classes``."""
        return self._fit(X, y, incremental=True, classes=classes)

    def predict(self, X: Any) -> Any:
        """The most probable class of each sample (multilabel: a 0/1 row per sample)."""
        codes = self._codes(self._outputs(X, "predict"))
        if self._multilabel:
            return codes
        if _is_text(self.classes_):  # labels that only NumPy holds: look them up on the host
            return self.classes_[to_host(codes)]
        xp = array_api_compat.array_namespace(codes)
        return xp.take(self.classes_, codes, axis=0)

    def predict_proba(self, X: Any) -> Any:
        """Probabilities ``(n_samples, n_classes)`` in the order of ``classes_``
        (multilabel: the probability of each label)."""
        outputs = self._outputs(X, "predict_proba")
        xp = array_api_compat.array_namespace(outputs)
        if self._multilabel:
            return softmax(xp, self._label_logits(xp, outputs), axis=1)[:, 1, :]  # Eq. (2)
        return softmax(xp, outputs, axis=1)

    def predict_log_proba(self, X: Any) -> Any:
        """The logarithms of ``predict_proba``, computed without taking a log of 0."""
        outputs = self._outputs(X, "predict_log_proba")
        xp = array_api_compat.array_namespace(outputs)
        if self._multilabel:
            return log_softmax(xp, self._label_logits(xp, outputs), axis=1)[0][:, 1, :]
        return log_softmax(xp, outputs, axis=1)[0]

    # --- what BaseMLP asks of it ---------------------------------------------------------

    def _encode_targets(self, y, where: Placement, *, first: bool, incremental: bool,
                        classes) -> tuple[Any, int]:
        check_classification_targets(y)
        if not _is_text(y):
            y = placed(y, where)  # numbers join X; text labels stay on the host
        xp = array_api_compat.array_namespace(y)
        multilabel = type_of_target(y) == "multilabel-indicator"
        if incremental and first and classes is None:
            raise ValueError(f"{self._name}: classes must be passed on the first call to "
                             f"partial_fit")
        if first:
            self._multilabel = multilabel
            if multilabel:
                self.classes_ = xp.arange(y.shape[1], device=array_api_compat.device(y))
            else:
                self.classes_ = _sorted_unique(xp, y if classes is None else _like(classes, y))
        else:
            self._check_same_classes(xp, y, multilabel, incremental, classes)
        if multilabel:
            return placed(xp.astype(y, xp.int64), where), 2 * y.shape[1]
        return placed(self._encode(xp, y), where), int(self.classes_.shape[0])

    def _check_same_classes(self, xp, y, multilabel: bool, incremental: bool, classes) -> None:
        """A later ``partial_fit`` (or ``fit`` with ``warm_start``) has the fitted classes."""
        if multilabel != self._multilabel:
            raise ValueError(f"{self._name}: fitted on {self._kind()} targets, got "
                             f"{type_of_target(y)} targets")
        if multilabel:
            if y.shape[1] != self.classes_.shape[0]:
                raise ValueError(f"{self._name}: fitted on {self.classes_.shape[0]} labels, "
                                 f"got an indicator matrix of {y.shape[1]} columns")
            return
        if incremental and classes is not None and not _same(
                xp, _sorted_unique(xp, _like(classes, y)), self.classes_):
            raise ValueError(f"{self._name}: classes={_listed(classes)} differs from the "
                             f"classes of the first call to partial_fit, "
                             f"{_listed(self.classes_)}")
        if not incremental and not _same(xp, _sorted_unique(xp, y), self.classes_):
            raise ValueError(f"{self._name}: warm_start needs y to have the classes of the "
                             f"last fit, {_listed(self.classes_)}; y has "
                             f"{_listed(_sorted_unique(xp, y))}")

    def _encode(self, xp, y):
        """The index of each label in ``classes_``; an error for labels not among them."""
        n_classes = int(self.classes_.shape[0])
        codes = xp.searchsorted(self.classes_, y)
        found = xp.take(self.classes_, xp.clip(codes, 0, n_classes - 1), axis=0) == y
        if not bool(xp.all(found)):
            unseen = np.unique(to_host(y)[~to_host(found)])
            raise ValueError(f"{self._name}: y has classes not in classes_ "
                             f"{_listed(self.classes_)}: {unseen.tolist()}")
        return codes

    def _loss_layer(self) -> CrossEntropyLossLayer:
        return CrossEntropyLossLayer()

    def _data_loss(self, loss_layer, xp, outputs, targets):
        if not self._multilabel:
            loss = loss_layer(outputs, targets)  # Eq. (1), mean over the batch
            return loss, loss_layer.backward()
        n_labels = targets.shape[1]
        loss = loss_layer(self._label_logits(xp, outputs), targets)  # mean over n * M positions
        gradient = xp.reshape(loss_layer.backward(), outputs.shape)
        return loss * n_labels, gradient * n_labels  # Eq. (3)

    def _validation_score(self, outputs, targets) -> float:
        return float(accuracy_score(targets, self._codes(outputs)))

    def _codes(self, outputs):
        """The predicted index of each sample's class (multilabel: 1 where ``yes`` wins)."""
        xp = array_api_compat.array_namespace(outputs)
        if not self._multilabel:
            return xp.argmax(outputs, axis=1)
        logits = self._label_logits(xp, outputs)
        return xp.astype(logits[:, 1, :] > logits[:, 0, :], xp.int64)  # sigma(b - a) > 1/2

    @staticmethod
    def _label_logits(xp, outputs):
        """The ``2M`` outputs of a multilabel network as ``(n, 2, M)``: no, yes per label."""
        return xp.reshape(outputs, (outputs.shape[0], 2, outputs.shape[1] // 2))

    def _kind(self) -> str:
        return "multilabel-indicator" if self._multilabel else "single-label"


def _like(values, reference):
    """``values`` (``partial_fit``'s ``classes``, any array-like) as an array of the
    library and device of ``reference`` (the labels)."""
    host = np.asarray(values)
    if _is_text(reference) or _is_text(host):
        return host
    return Placement.of(reference).from_host(host, dtype=host.dtype.name)


def _sorted_unique(xp, labels):
    return xp.sort(xp.unique_values(labels))


def _same(xp, a, b) -> bool:
    return a.shape == b.shape and bool(xp.all(a == b))


def _listed(labels) -> list:
    return to_host(labels).tolist() if hasattr(labels, "shape") else list(labels)
