r"""GPT: a decoder-only Transformer language model, and sampling from it."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np

from mnn import backends
from mnn.backends import Placement
from mnn.base import BaseLayer, Example
from mnn.checks import check_kind, finite_non_negative, integer, namespace_of, positive_int
from mnn.errors import (
    ArgumentError,
    ArgumentTypeError,
    DTypeError,
    NonFiniteError,
    ShapeError,
    describe,
)
from mnn.initializers import host_generator
from mnn.layers.dropout import Dropout
from mnn.layers.embedding import Embedding
from mnn.layers.layer_norm import LayerNorm
from mnn.layers.linear import LinearLayer
from mnn.layers.sequential import SequentialLayers
from mnn.layers.softmax import softmax
from mnn.layers.transformer_block import TransformerBlock
from mnn.types import Array, Seed


class GPT(BaseLayer):
    r"""Token ids ``(B, T)`` to next-token logits ``(B, T, V)``, as GPT-2 computes them.

    ``GPT(vocab_size, context, d_model=128, heads=4, layers=4, hidden=None,
    dropout=0.0, bias=True, approximate="tanh")``. The parts, by parameter name:
    ``tokens`` (``Embedding(V, D)``), ``positions`` (``Embedding(context, D)``),
    ``dropout``, ``blocks`` (``layers`` pre-norm ``TransformerBlock`` blocks, with the
    causal mask), ``norm`` (the final ``LayerNorm``) and ``head`` (the LM head, a
    ``LinearLayer(D, V)`` without bias). Train it with the cross-entropy over
    (batch, time, vocab), the labels being the ids shifted by one position::

        model = mnn.SequentialLayers([gpt, mnn.CrossEntropyLossLayer(axis=-1)])
        loss = model(ids[:, :-1], ids[:, 1:])   # mean over all B x T positions
        model.backward()

    and sample from it with ``generate``.

    Forward
    -------
    With :math:`E` the token table, :math:`P` the position table and
    :math:`t = 0, \dots, T-1`:

    .. math::
        h^{(0)}_{bt} = E_{i_{bt}} + P_t  \qquad (1)

    .. math::
        h^{(l)} = \operatorname{Block}_l(h^{(l-1)}), \quad l = 1, \dots, L, \qquad
        z = \operatorname{LN}(h^{(L)})\, W_{\text{head}}^\top  \qquad (2)

    (dropout after (1) in training mode). The causal mask makes :math:`z_{bt}`
    depend on :math:`i_{b0}, \dots, i_{bt}` only, so every position of a
    sequence is a training example for the next token.

    Backward
    --------
    (2) is a chain: each part's ``backward`` in reverse order (each derived in
    its own docstring). For (1), :math:`G = \partial \ell / \partial h^{(0)}`
    reaches both tables. The token ids pick rows of :math:`E`: ``Embedding``'s
    scatter-add, repeated tokens adding up. Position :math:`t` is used by every
    sample of the batch, so its gradient is the sum over the batch,

    .. math::
        \frac{\partial \ell}{\partial P_t} = \sum_b G_{bt},  \qquad (3)

    which ``positions.backward`` then adds into rows :math:`0, \dots, T-1`. The ids
    are integers: ``backward`` returns ``None``.
    """

    def __init__(self, vocab_size: int, context: int, d_model: int = 128, heads: int = 4,
                 layers: int = 4, hidden: int | None = None, dropout: float = 0.0,
                 bias: bool = True, approximate: str = "tanh", *, rng: Seed = None) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("context", context),
                            ("layers", layers)):
            positive_int(self.name, name, value)
        generator = host_generator(rng)
        self.vocab_size, self.context = vocab_size, context
        self.d_model, self.heads = d_model, heads
        self.layers, self.hidden, self.dropout = layers, hidden, dropout
        self.bias, self.approximate = bias, approximate
        self.tokens = Embedding(vocab_size, d_model, rng=generator)
        self.positions = Embedding(context, d_model, rng=generator)
        self.embedding_dropout = Dropout(dropout, rng=generator)
        self.blocks = SequentialLayers([
            TransformerBlock(d_model, heads, hidden, dropout, bias, causal=True,
                             approximate=approximate, rng=generator) for _ in range(layers)])
        self.norm = LayerNorm(d_model)
        self.head = LinearLayer(d_model, vocab_size, bias=False, init="glorot", rng=generator)
        self.sublayers = {"tokens": self.tokens, "positions": self.positions,
                          "dropout": self.embedding_dropout, "blocks": self.blocks,
                          "norm": self.norm, "head": self.head}
        self.expect_inputs(min_rank=2, max_rank=2, kind="integral")

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        # 2 x 6 x 23 = 276 logits: more than gradcheck's full_jacobian_max, so random
        # projections check every parameter (its parts have full-Jacobian examples of their own).
        model = cls(vocab_size=23, context=8, d_model=4, heads=2, layers=1, hidden=6, rng=rng)
        return model, rng.integers(0, 23, size=(2, 6)), None

    def compute_forward(self, xp, inputs, feedbacks):
        length = inputs.shape[1]
        if length > self.context:
            raise ShapeError(f"{self.name}: expected at most {self.context} tokens per sequence "
                             f"(the context), got {describe(inputs)}")
        where = array_api_compat.device(inputs)
        x = self.tokens(inputs) + self.positions(xp.arange(length, device=where))  # Eq. (1)
        x = self.blocks(self.embedding_dropout(x))  # Eq. (2)
        return self.head(self.norm(x))  # Eq. (2)

    def compute_backward(self, xp, gradients):
        g = self.embedding_dropout.backward(self.blocks.backward(self.norm.backward(
            self.head.backward(gradients))))  # Eq. (2), backwards
        self.tokens.backward(g)  # Eq. (1): scatter-add into the rows of the token ids
        self.positions.backward(xp.sum(g, axis=0))  # Eq. (3)
        return None

    def generate(self, prompt: Array, n: int, temperature: float = 1.0,
                 top_k: int | None = None, *, rng: Seed = None) -> Array:
        r"""``prompt`` followed by ``n`` sampled tokens: ids ``(B, T + n)`` (or ``(T + n,)``).

        ``prompt`` holds integer ids, ``(B, T)`` or one sequence ``(T,)`` with
        :math:`T \ge 1`, in the library and on the device of the model, in an integer
        dtype that holds every id of the vocabulary (the new tokens come back in the
        prompt's dtype; ``uint8`` cannot hold the ids of a vocabulary of 300). Each new
        token is drawn from the model's next-token distribution given the last
        ``context`` tokens:

        .. math::
            p = \operatorname{softmax}(z / \tau)

        with temperature :math:`\tau` (``temperature``; below 1 sharper, above 1
        flatter; 0 takes the most likely token, no randomness). ``top_k`` keeps
        only the :math:`k` largest logits (the others get probability 0). The draw
        inverts the distribution function: with :math:`u` uniform on
        :math:`[0, 1)` (the adapter's ``random_uniform``, ``B`` numbers a step from
        one generator seeded by ``rng``: an int or a ``numpy.random.Generator``), the
        token is the first :math:`j` with :math:`\sum_{l \le j} p_l > u \sum_l p_l`.
        Logits that are NaN or :math:`+\infty` after the division by :math:`\tau`
        (a model whose weights diverged, or a temperature so small that the quotient
        overflows the dtype) have no distribution: ``NonFiniteError``, as
        ``torch.multinomial`` refuses them. Everything runs on the model's device,
        in evaluation mode (no dropout); the mode is restored afterwards.
        """
        owner = f"{self.name}.generate"
        n, temperature, top_k, rng = self._generate_arguments(n, temperature, top_k, rng)
        xp = namespace_of(self, prompt, "prompt")
        check_kind(self, xp, prompt, "integral", "prompt")
        one_sequence = len(prompt.shape) == 1
        ids = xp.reshape(prompt, (1, -1)) if one_sequence else prompt
        if len(ids.shape) != 2 or ids.shape[1] == 0:
            raise ShapeError(f"{owner}: expected a prompt of at least one token, "
                             f"shape (B, T) or (T,), got {describe(prompt)}")
        if xp.iinfo(ids.dtype).max < self.vocab_size - 1:
            raise DTypeError(f"{owner}: expected a prompt whose dtype holds every id of the "
                             f"vocabulary (up to {self.vocab_size - 1}), got "
                             f"{describe(prompt)}, whose largest value is "
                             f"{xp.iinfo(ids.dtype).max}; give the prompt as int64")
        where = Placement.of(ids)
        draws = where.backend.generator(int(rng), where.device) if isinstance(
            rng, (int, np.integer)) else rng  # one generator for every step's draws
        # The window that the model reads has the same shape (B, context) at every step:
        # the last tokens, left-aligned, with id 0 after them until the context fills up.
        # Each position is blind to the ones after it (causal attention, a recurrence),
        # so the logits at the last token are those of the window without the padding;
        # and a library that compiles each new shape once (JAX) compiles one step.
        batch, filled = ids.shape[0], min(ids.shape[1], self.context)
        window = xp.concat([ids[:, ids.shape[1] - filled:],
                            xp.zeros((batch, self.context - filled), dtype=ids.dtype,
                                     device=where.device)], axis=1)
        positions = xp.arange(self.context, device=where.device)
        modes = [(layer, layer.training) for _, layer in self.named_layers()]
        self.eval()
        new_tokens = []
        try:
            for _ in range(n):
                last = xp.asarray([filled - 1], device=where.device)  # an array: no new shape
                scores = self.forward(window)  # (B, context, V)
                logits = xp.reshape(xp.take(scores, last, axis=1), (batch, scores.shape[-1]))
                uniform = None if temperature == 0.0 else where.backend.random_uniform(
                    (batch,), draws, where.device, logits.dtype)
                token = xp.astype(xp.reshape(self._sample(xp, logits, uniform, temperature,
                                                          top_k), (-1, 1)), ids.dtype)
                new_tokens.append(token)
                if filled < self.context:  # the token takes the first free place
                    window = xp.where(positions == filled, token, window)
                    filled += 1
                else:  # the window moves on by one token
                    window = xp.concat([window[:, 1:], token], axis=1)
        finally:
            for layer, mode in modes:
                layer.training = mode
        ids = xp.concat([ids, *new_tokens], axis=1)
        return xp.reshape(ids, (-1,)) if one_sequence else ids

    def _generate_arguments(self, n, temperature, top_k, rng) -> tuple:
        """``generate``'s arguments, checked: ``(n, temperature, top_k, seed)``, the seed an
        int or a ``numpy.random.Generator`` (drawn from mnn's global one when ``rng`` is None,
        so that ``mnn.manual_seed`` decides)."""
        owner = f"{self.name}.generate"
        n = integer(owner, "n", n, "an int >= 0")
        if n < 0:
            raise ArgumentError(f"{owner}: expected n to be an int >= 0, got {n}")
        temperature = finite_non_negative(owner, "temperature", temperature)
        if top_k is not None:
            top_k = positive_int(owner, "top_k", top_k)
        try:
            generator = host_generator(rng)
        except TypeError as error:
            raise ArgumentTypeError(f"{owner}: {error}") from None
        if isinstance(rng, (int, np.integer)) and rng >= 2**64:  # no library seeds past 64 bits
            raise ArgumentError(f"{owner}: expected rng to be a seed below 2**64 or a "
                                f"numpy.random.Generator, got {rng}")
        seed = int(generator.integers(2**31)) if rng is None else rng
        return n, temperature, top_k, seed

    def _sample(self, xp, logits, uniform, temperature: float, top_k: int | None):
        """One token per row of ``logits`` ``(B, V)``, by ``generate``'s rule (``uniform``:
        ``B`` draws, None for ``temperature`` 0)."""
        if temperature != 0.0:
            # NumPy's warnings: an overflow, or a temperature that rounds to 0 in the
            # logits' dtype (1e-300 in float32), gives inf or NaN, which is refused below
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                logits = logits / temperature
        largest = xp.max(logits, axis=-1)  # NaN where a row holds NaN: max propagates NaN
        finite = xp.isfinite(largest)
        if not bool(xp.all(finite)):
            rows = np.flatnonzero(~backends.to_host(finite)).tolist()
            divided, hint = "", " (NaN weights give NaN logits)"
            if temperature != 0.0:
                divided = f" divided by the temperature {temperature:g}"
                hint = (" (NaN weights give NaN logits, and a temperature near 0 overflows "
                        "the dtype: temperature=0 takes the most likely token)")
            raise NonFiniteError(
                f"{self.name}.generate: the next-token logits{divided} of {len(rows)} of "
                f"{logits.shape[0]} sequences (the first: sequence {rows[0]}) are NaN or +inf, "
                f"or all -inf, in {logits.dtype}: there is no distribution to sample "
                f"from{hint}")
        if temperature == 0.0:
            return xp.argmax(logits, axis=-1)
        if top_k is not None and top_k < logits.shape[-1]:
            kth = xp.sort(logits, axis=-1, descending=True)[:, top_k - 1:top_k]
            logits = xp.where(logits < kth, -math.inf, logits)
        cumulative = xp.cumulative_sum(softmax(xp, logits, axis=-1), axis=-1)
        threshold = xp.reshape(uniform, (-1, 1)) * cumulative[:, -1:]  # below the total
        return xp.sum(xp.astype(cumulative <= threshold, xp.int64), axis=-1)
