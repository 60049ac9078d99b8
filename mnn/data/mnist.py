"""Real MNIST: 60,000 training and 10,000 test images of 28x28 pixels, from IDX files.

``load_mnist(directory)`` reads the four files that MNIST is published as, each
either gzip-compressed (``.gz``, as published) or plain:

* ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``
* ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``

With ``download=True`` the missing ones are fetched from ``MIRRORS`` and checked
against ``CHECKSUMS``, the MD5 sums published with the files (the ones
torchvision checks too); both can be replaced, e.g. to use a local mirror.
Images become rows of 784 features scaled to [0, 1]; MNIST's own split is kept
(the 10,000 ``t10k`` images are the test set).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from mnn.data.dataset import Dataset
from mnn.data.download import download as fetch
from mnn.data.errors import DataError
from mnn.data.idx import read_idx
from mnn.types import Path

FILES = {"train_images": "train-images-idx3-ubyte", "train_labels": "train-labels-idx1-ubyte",
         "test_images": "t10k-images-idx3-ubyte", "test_labels": "t10k-labels-idx1-ubyte"}
MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/",
           "https://storage.googleapis.com/cvdf-datasets/mnist/",
           "http://yann.lecun.com/exdb/mnist/")
CHECKSUMS = {"train-images-idx3-ubyte.gz": "md5:f68b3c2dcbeaaa9fbdd348bbdeb94873",
             "train-labels-idx1-ubyte.gz": "md5:d53e105ee54ea40749a09fcbcd1e9432",
             "t10k-images-idx3-ubyte.gz": "md5:9fb629c4189551a2d022fa330f9573f3",
             "t10k-labels-idx1-ubyte.gz": "md5:ec29112dd5afa0611ce80d1b7f02629c"}
IMAGE_SHAPE = (28, 28)


def load_mnist(directory: Path, download: bool = False, base_urls: Sequence[str] = MIRRORS,
               checksums: Mapping[str, str] | None = None,
               timeout: float = 30.0) -> tuple[Dataset, Dataset]:
    """``(train, test)``: host float64 inputs of shape ``(n, 784)`` in [0, 1], int64 labels.

    Raises ``DataError`` naming the directory and the missing files when they are
    not there (and ``download`` is False), or naming the file that is malformed.
    """
    directory = os.fspath(directory)
    if download:
        checksums = CHECKSUMS if checksums is None else checksums
        missing = {name: checksum for name, checksum in checksums.items()
                   if _find(directory, name.removesuffix(".gz")) is None}
        if missing:
            fetch(directory, missing, base_urls, timeout)
    where = missing_files(directory)
    if where:
        raise DataError(f"MNIST: {where}; give the directory that holds the four IDX files, "
                        f"or pass download=True to fetch them")
    paths = {key: _find(directory, name) for key, name in FILES.items()}
    train = _pair(paths["train_images"], paths["train_labels"], "MNIST (train)")
    test = _pair(paths["test_images"], paths["test_labels"], "MNIST (test)")
    return train, test


def missing_files(directory: Path) -> str | None:
    """What ``directory`` lacks of the four IDX files, in words (``mnist-data does not
    exist``, ``mnist-data lacks t10k-labels-idx1-ubyte[.gz]``); None if it has them all."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        return f"{directory} does not exist"
    absent = [name for name in FILES.values() if _find(directory, name) is None]
    return f"{directory} lacks {', '.join(f'{m}[.gz]' for m in absent)}" if absent else None


def _find(directory: str, name: str) -> str | None:
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.isfile(path):
            return path
    return None


def _pair(images_path: str, labels_path: str, name: str) -> Dataset:
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DataError(f"{name}: expected unsigned bytes (IDX type 08) in {images_path} and "
                        f"{labels_path}, got {images.dtype} and {labels.dtype}")
    if tuple(images.shape[1:]) != IMAGE_SHAPE:
        raise DataError(f"{images_path}: expected images of {IMAGE_SHAPE[0]}x{IMAGE_SHAPE[1]} "
                        f"pixels, got {images.shape[1]}x{images.shape[2]}")
    if images.shape[0] != labels.shape[0]:
        raise DataError(f"{name}: {images_path} holds {images.shape[0]} images but "
                        f"{labels_path} holds {labels.shape[0]} labels")
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: labels must be digits 0-9, found {int(labels.max())}")
    inputs = images.reshape(images.shape[0], -1).astype(np.float64) / 255.0
    return Dataset(inputs, labels.astype(np.int64), name)
