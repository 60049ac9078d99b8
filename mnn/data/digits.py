"""The default data set: 8x8 handwritten digits, embedded in mnn (no download, no extra package).

1,797 grey images of the digits 0-9, 8x8 pixels with values 0-16: the test part
of "Optical Recognition of Handwritten Digits" (E. Alpaydin and C. Kaynak, UCI
Machine Learning Repository, 1998, CC BY 4.0, https://doi.org/10.24432/C50P49),
as scikit-learn ships it (``sklearn.datasets.load_digits``; ``digits.csv.gz``
here is a byte-for-byte copy of its file). Each row holds 64 pixels and the
label. Here each image becomes a row of 64 features scaled to [0, 1].

The split into training and test data is fixed: one permutation from a
generator seeded with ``SPLIT_SEED`` (whatever seed the training uses), then the
last 20% (359 images) are held out for testing and the first 1,438 train. So
every run, on every backend, is scored on the same 359 images.
"""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from mnn.data.dataset import Dataset

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def load_digits() -> tuple[Dataset, Dataset]:
    """``(train, test)``: host float64 inputs of shape ``(n, 64)`` in [0, 1], int64 labels."""
    with resources.files("mnn.data").joinpath("digits.csv.gz").open("rb") as packed, \
            gzip.open(packed, "rt") as text:
        table = np.loadtxt(text, delimiter=",")
    inputs = table[:, :-1] / 16.0  # pixel values 0..16 -> [0, 1]
    labels = table[:, -1].astype(np.int64)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(labels))
    n_test = round(TEST_FRACTION * len(labels))
    train, test = order[:-n_test], order[-n_test:]
    return (Dataset(inputs[train], labels[train], "digits (train)"),
            Dataset(inputs[test], labels[test], "digits (test)"))
