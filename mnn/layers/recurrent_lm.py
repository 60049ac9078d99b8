r"""RecurrentLM: a character-level language model on an LSTM or a GRU, and sampling from it."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import positive_int
from mnn.errors import ArgumentError, ShapeError, describe
from mnn.initializers import host_generator
from mnn.layers.embedding import Embedding
from mnn.layers.gpt import GPT
from mnn.layers.linear import LinearLayer
from mnn.layers.recurrent import GRU, LSTM
from mnn.types import Array, Seed

#: The recurrent layer of each ``cell``.
CELLS = {"lstm": LSTM, "gru": GRU}


class RecurrentLM(BaseLayer):
    r"""Token ids ``(B, T)`` to next-token logits ``(B, T, V)`` through a recurrent stack.

    ``RecurrentLM(vocab_size, context, hidden_size=128, num_layers=2, cell="lstm")``.
    The parts, by parameter name: ``tokens`` (``Embedding(V, H)``), ``rnn`` (an
    ``LSTM`` or a ``GRU``, ``cell``, of ``num_layers`` layers of width ``H``,
    starting from the zero state) and ``head`` (``LinearLayer(H, V)``). It trains
    as ``GPT`` does, with the cross-entropy over (batch, time, vocab) and the ids
    shifted by one as labels::

        model = mnn.SequentialLayers([lm, mnn.CrossEntropyLossLayer(axis=-1)])

    ``context`` is the length of the training windows: ``generate`` reads the last
    ``context`` tokens from the zero state, as every training window was read, so
    that sampling is ``GPT.generate``'s rule unchanged.

    Forward
    -------
    With :math:`E` the token table:

    .. math::
        x_{bt} = E_{i_{bt}}, \qquad
        h = \operatorname{RNN}(x), \qquad
        z = h W_{\text{head}}^\top + b_{\text{head}}  \qquad (1)

    The recurrence makes :math:`z_{bt}` depend on :math:`i_{b0}, \dots, i_{bt}`
    only: every position of a window is a training example for the next token.

    Backward
    --------
    (1) is a chain: ``head.backward``, then backpropagation through time in
    ``rnn.backward`` (derived in ``mnn.layers.recurrent``), then ``Embedding``'s
    scatter-add into the rows of the token ids, repeated tokens adding up. The ids
    are integers: ``backward`` returns ``None``.
    """

    def __init__(self, vocab_size: int, context: int, hidden_size: int = 128,
                 num_layers: int = 2, cell: str = "lstm", *, rng: Seed = None) -> None:
        super().__init__()
        vocab_size = positive_int(self.name, "vocab_size", vocab_size)
        context = positive_int(self.name, "context", context)
        hidden_size = positive_int(self.name, "hidden_size", hidden_size)
        num_layers = positive_int(self.name, "num_layers", num_layers)
        if not (isinstance(cell, str) and cell in CELLS):  # a list is no key of CELLS
            raise ArgumentError(f"{self.name}: expected cell to be one of {sorted(CELLS)}, "
                                f"got {cell!r}")
        generator = host_generator(rng)
        self.vocab_size, self.context = vocab_size, context
        self.hidden_size, self.num_layers, self.cell = hidden_size, num_layers, cell
        self.tokens = Embedding(vocab_size, hidden_size, rng=generator)
        self.rnn = CELLS[cell](hidden_size, hidden_size, num_layers, rng=generator)
        self.head = LinearLayer(hidden_size, vocab_size, rng=generator)
        self.sublayers = {"tokens": self.tokens, "rnn": self.rnn, "head": self.head}
        self.expect_inputs(min_rank=2, max_rank=2, kind="integral")

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        model = cls(vocab_size=7, context=5, hidden_size=3, num_layers=2, cell="lstm", rng=rng)
        return model, rng.integers(0, 7, size=(2, 4)), None

    def compute_forward(self, xp, inputs, feedbacks):
        if inputs.shape[1] > self.context:
            raise ShapeError(f"{self.name}: expected at most {self.context} tokens per sequence "
                             f"(the context), got {describe(inputs)}")
        return self.head(self.rnn(self.tokens(inputs)))  # Eq. (1)

    def compute_backward(self, xp, gradients):
        self.tokens.backward(self.rnn.backward(self.head.backward(gradients)))  # Eq. (1)
        return None

    def generate(self, prompt: Array, n: int, temperature: float = 1.0,
                 top_k: int | None = None, *, rng: Seed = None) -> Array:
        """``prompt`` followed by ``n`` sampled tokens, by ``GPT.generate``'s rule (one
        function serves both): the last ``context`` tokens, ``temperature``, ``top_k``
        and ``rng`` as described there."""
        return GPT.generate(self, prompt, n, temperature, top_k, rng=rng)  # type: ignore[arg-type]

    # GPT.generate's helpers, shared as they are.
    _generate_arguments = GPT._generate_arguments
    _sample = GPT._sample
