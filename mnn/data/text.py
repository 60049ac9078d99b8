"""Text for a character-level language model: the default corpus, a vocabulary, random windows.

* ``pydoc_corpus()``: the reference text of Python's ``help()`` (``pydoc_data.topics``),
  which ships with every Python: nothing to download. Its size depends on the Python
  version (465,048 characters on 3.11, 458,995 on 3.10, 510,664 on 3.13).
* ``read_text(path, max_bytes)``: a UTF-8 text file, refusing what is not a regular file
  (a FIFO would block, ``/dev/zero`` never ends) and files above ``max_bytes``.
* ``CharacterVocabulary``: one id per distinct character; ``encode`` and ``decode``.
* ``TextWindows``: random windows of a token sequence, each with its next-token labels
  (the same window shifted by one), cut out where the tokens live.

Memory: a text of :math:`N` characters costs :math:`N` bytes as a Python string (1 to 4
bytes a character: Python stores a string in the narrowest width its characters need)
and :math:`N` bytes as tokens when the vocabulary has at most 256 characters
(``CharacterVocabulary.dtype``: the narrowest unsigned type that holds every id);
only the windows of a batch become int64.
"""

from __future__ import annotations

import os
import stat

import array_api_compat
import numpy as np

from mnn import backends
from mnn.data.errors import DataError
from mnn.errors import describe
from mnn.initializers import host_generator
from mnn.types import Array, Seed


def pydoc_corpus() -> str:
    """The ``pydoc_data.topics`` reference text, its topics in sorted order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


def read_text(path: str, max_bytes: int, limit: str = "max_bytes") -> str:
    """The text of the UTF-8 file at ``path``; a ``DataError`` that names ``path`` when it is
    missing, a directory, not a regular file, larger than ``max_bytes`` (the message names
    the limit as ``limit``: the option that raises it) or not UTF-8.

    The file is opened without blocking and checked on the open descriptor: a FIFO
    would wait for a writer forever, and a device such as ``/dev/zero`` has no end.
    At most ``max_bytes + 1`` bytes are read, so a file that grows meanwhile is caught
    too.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
                             | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:  # Windows cannot open a directory; POSIX opens it read-only
        raise DataError(f"{path}: a directory, not a text file") from None
    except OSError as error:  # no permission, say
        raise DataError(f"{path}: cannot be opened ({error.strerror})") from None
    try:
        status = os.fstat(descriptor)
        if stat.S_ISDIR(status.st_mode):
            raise DataError(f"{path}: a directory, not a text file")
        if not stat.S_ISREG(status.st_mode):
            raise DataError(f"{path}: not a regular file (a FIFO, a device or a socket); "
                            f"expected a text file")
        data = _read(descriptor, max_bytes + 1)
    finally:
        os.close(descriptor)
    if len(data) > max_bytes:
        size = max(status.st_size, len(data))
        raise DataError(f"{path}: {size:,} bytes, more than {limit} allows ({max_bytes:,} "
                        f"bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error})") from None


def _read(descriptor: int, most: int) -> bytes:
    """Up to ``most`` bytes from ``descriptor``, until the end of the file."""
    chunks, left = [], most
    while left > 0:
        chunk = os.read(descriptor, min(left, 1 << 24))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


class CharacterVocabulary:
    """The distinct characters of a text, sorted; a character's id is its position."""

    def __init__(self, characters: str) -> None:
        self.characters = "".join(sorted(set(characters)))
        if not self.characters:
            raise DataError("CharacterVocabulary: the text is empty")
        self._ids = {c: i for i, c in enumerate(self.characters)}

    def __len__(self) -> int:
        return len(self.characters)

    @property
    def dtype(self) -> np.dtype:
        """The narrowest unsigned NumPy dtype that holds every id: uint8 up to 256 characters."""
        return np.dtype(np.min_scalar_type(len(self) - 1))

    def encode(self, text: str, dtype: np.dtype | str = np.int64) -> np.ndarray:
        """Host ids of ``text`` in ``dtype`` (int64, or ``self.dtype`` for a long text: one
        byte a character); a character outside the vocabulary is a ``DataError``."""
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=dtype, count=len(text))
        except KeyError as error:
            raise DataError(f"CharacterVocabulary: the character {error.args[0]!r} is not in "
                            f"the vocabulary of {len(self)} characters") from None

    def decode(self, ids: Array) -> str:
        """The text of a 1-D array of integer ids (of any backend), each in ``[0, len(self))``."""
        host = backends.to_host(ids)
        if host.ndim != 1 or host.dtype.kind not in "iu":
            raise DataError(f"CharacterVocabulary: expected a 1-D array of integer ids, got "
                            f"{describe(ids)}")
        outside = (host < 0) | (host >= len(self))
        if outside.any():
            raise DataError(f"CharacterVocabulary: expected ids in [0, {len(self)}) (the "
                            f"vocabulary has {len(self)} characters), got "
                            f"{host[outside][0]} at position {int(np.argmax(outside))}")
        return "".join(self.characters[i] for i in host.tolist())


class TextWindows:
    """Batches of ``batch_size`` random windows of ``context`` tokens, and their labels.

    ``tokens`` is a 1-D integer array on any backend and device. ``sample()`` draws
    the windows' starting positions on the host from a seeded generator (``rng``: an
    int or a ``numpy.random.Generator``), so the same seed gives the same batches on
    every backend; the windows themselves are taken out of ``tokens`` where it lives,
    and come back as int64 whatever the dtype of ``tokens`` (uint8 keeps a long text
    small). Labels are the next tokens: window ``[s, s + T)`` has labels
    ``[s + 1, s + T + 1)``.
    """

    def __init__(self, tokens: Array, context: int, batch_size: int, rng: Seed = 0) -> None:
        self.tokens, self.context, self.batch_size = tokens, context, batch_size
        self.n = int(tokens.shape[0])
        if self.n < context + 1:
            raise DataError(f"TextWindows: a window of {context} tokens and its labels need "
                            f"{context + 1} tokens, the text has {self.n}")
        self.generator = host_generator(rng)
        self.xp = array_api_compat.array_namespace(tokens)
        self.where = backends.Placement.of(tokens)
        self._steps = np.arange(context + 1)

    def sample(self) -> tuple[Array, Array]:
        """``(inputs, labels)``, both ``(batch_size, context)`` int64 arrays."""
        starts = self.generator.integers(0, self.n - self.context, size=self.batch_size)
        positions = self.where.from_host((starts[:, None] + self._steps).reshape(-1))
        windows = self.xp.reshape(self.xp.astype(self.xp.take(self.tokens, positions),
                                                 self.xp.int64),
                                  (self.batch_size, self.context + 1))
        return windows[:, :-1], windows[:, 1:]
