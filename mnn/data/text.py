"""Text for a character-level language model: the default corpus, a vocabulary, random windows.

* ``pydoc_corpus()``: the reference text of Python's ``help()`` (``pydoc_data.topics``,
  about 465,000 characters), which ships with every Python: nothing to download.
* ``CharacterVocabulary``: one id per distinct character; ``encode`` and ``decode``.
* ``TextWindows``: random windows of a token sequence, each with its next-token labels
  (the same window shifted by one), cut out where the tokens live.
"""

from __future__ import annotations

import array_api_compat
import numpy as np

from mnn import backends
from mnn.data.errors import DataError
from mnn.initializers import host_generator
from mnn.types import Array, Seed


def pydoc_corpus() -> str:
    """The ``pydoc_data.topics`` reference text, its topics in sorted order."""
    from pydoc_data.topics import topics

    return "\n".join(topics[key] for key in sorted(topics))


class CharacterVocabulary:
    """The distinct characters of a text, sorted; a character's id is its position."""

    def __init__(self, characters: str) -> None:
        self.characters = "".join(sorted(set(characters)))
        if not self.characters:
            raise DataError("CharacterVocabulary: the text is empty")
        self._ids = {c: i for i, c in enumerate(self.characters)}

    def __len__(self) -> int:
        return len(self.characters)

    def encode(self, text: str) -> np.ndarray:
        """Host int64 ids of ``text``; a character outside the vocabulary is a ``DataError``."""
        try:
            return np.fromiter((self._ids[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError as error:
            raise DataError(f"CharacterVocabulary: the character {error.args[0]!r} is not in "
                            f"the vocabulary of {len(self)} characters") from None

    def decode(self, ids: Array) -> str:
        """The text of a 1-D array of ids (of any backend)."""
        return "".join(self.characters[i] for i in backends.to_host(ids).tolist())


class TextWindows:
    """Batches of ``batch_size`` random windows of ``context`` tokens, and their labels.

    ``tokens`` is a 1-D integer array on any backend and device. ``sample()`` draws
    the windows' starting positions on the host from a seeded generator (``rng``: an
    int or a ``numpy.random.Generator``), so the same seed gives the same batches on
    every backend; the windows themselves are taken out of ``tokens`` where it lives.
    Labels are the next tokens: window ``[s, s + T)`` has labels ``[s + 1, s + T + 1)``.
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
        """``(inputs, labels)``, both ``(batch_size, context)`` integer arrays."""
        starts = self.generator.integers(0, self.n - self.context, size=self.batch_size)
        positions = self.where.from_host((starts[:, None] + self._steps).reshape(-1))
        windows = self.xp.reshape(self.xp.take(self.tokens, positions),
                                  (self.batch_size, self.context + 1))
        return windows[:, :-1], windows[:, 1:]
