"""scikit-learn estimators made of mnn layers: ``MLPClassifier`` and ``MLPRegressor``.

    from mnn.sklearn import MLPClassifier

    clf = MLPClassifier(hidden_layer_sizes=(100,), random_state=0).fit(X, y)
    clf.predict(X)

They pass scikit-learn's ``check_estimator`` and work in pipelines and searches. Inside
``sklearn.config_context(array_api_dispatch=True)`` they train on the library and
device of ``X`` (torch, CuPy, array-api-strict, NumPy) and return arrays of it.
scikit-learn is an optional dependency (``pip install "manual-nn[sklearn]"``):
``import mnn`` does not import it; ``import mnn.sklearn`` does. Guide: docs/sklearn.md.

* ``mlp.py``: ``BaseMLP``, what both share: parameters, network, the training loop;
* ``classifier.py``: ``MLPClassifier``, labels and the cross-entropy;
* ``regressor.py``: ``MLPRegressor``, the squared error.
"""

from mnn.sklearn.classifier import MLPClassifier
from mnn.sklearn.mlp import BaseMLP
from mnn.sklearn.regressor import MLPRegressor

__all__ = ["BaseMLP", "MLPClassifier", "MLPRegressor"]
