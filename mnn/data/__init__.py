"""Data for training: a batch iterator and two data sets, each in its own file.

* ``Dataset`` (``dataset.py``): inputs and labels, moved to a backend and device once.
* ``Batches`` (``batches.py``): shuffled mini-batches, cut out where the data lives.
* ``DistributedBatches`` (``distributed_batches.py``): one rank's share of every batch,
  for data-parallel training (``mnn.distributed``).
* ``load_digits`` (``digits.py``): the embedded 8x8 digits, a fixed test split.
* ``load_mnist`` (``mnist.py``): MNIST from IDX files (``idx.py``), downloaded on request
  and checked against published checksums (``download.py``).
* ``pydoc_corpus``, ``CharacterVocabulary``, ``TextWindows`` (``text.py``): text for a
  character-level language model.
"""

from mnn.data.batches import Batches
from mnn.data.dataset import Dataset
from mnn.data.digits import load_digits
from mnn.data.distributed_batches import DistributedBatches
from mnn.data.download import download
from mnn.data.errors import DataError, DownloadError
from mnn.data.idx import read_idx, write_idx
from mnn.data.mnist import load_mnist
from mnn.data.text import CharacterVocabulary, TextWindows, pydoc_corpus

__all__ = ["Batches", "DistributedBatches", "Dataset", "load_digits", "load_mnist", "read_idx",
           "write_idx", "download", "DataError", "DownloadError", "CharacterVocabulary",
           "TextWindows", "pydoc_corpus"]
