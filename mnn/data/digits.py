"""The default data set: scikit-learn's bundled 8x8 handwritten digits (no download).

1,797 grey images of the digits 0-9, 8x8 pixels with values 0-16, which ship
inside scikit-learn (``sklearn.datasets.load_digits``). Here each image becomes
a row of 64 features scaled to [0, 1].

The split into training and test data is fixed: one permutation from a
generator seeded with ``SPLIT_SEED`` (whatever seed the training uses), then the
last 20% (360 images) are held out for testing and the first 1,437 train. So
every run, on every backend, is scored on the same 360 images.
"""

from __future__ import annotations

import numpy as np

from mnn.data.dataset import Dataset
from mnn.data.errors import DataError

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits() -> tuple[Dataset, Dataset]:
    """``(train, test)``: host float64 inputs of shape ``(n, 64)`` in [0, 1], int64 labels."""
    try:
        from sklearn.datasets import load_digits as sklearn_digits
    except ImportError:
        raise DataError("the digits data set comes with scikit-learn, which is not installed; "
                        "install it with: pip install scikit-learn (or the extra: pip install "
                        "'manual-nn[examples]')") from None
    bunch = sklearn_digits()
    inputs = np.asarray(bunch.data, dtype=np.float64) / 16.0  # pixel values 0..16 -> [0, 1]
    labels = np.asarray(bunch.target, dtype=np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = round(TEST_FRACTION * len(labels))
    train, test = order[:-n_test], order[-n_test:]
    return (Dataset(inputs[train], labels[train], "digits (train)"),
            Dataset(inputs[test], labels[test], "digits (test)"))
