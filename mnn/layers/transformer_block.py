r"""A pre-norm Transformer block: attention and an MLP, each in a residual connection."""

from __future__ import annotations

import numpy as np

from mnn.base import Example
from mnn.checks import flag, positive_int, probability
from mnn.errors import ArgumentError
from mnn.initializers import host_generator
from mnn.layers.attention import MultiHeadAttention
from mnn.layers.dropout import Dropout
from mnn.layers.gelu import GELU
from mnn.layers.layer_norm import LayerNorm
from mnn.layers.linear import LinearLayer
from mnn.layers.residual import Residual
from mnn.layers.sequential import SequentialLayers
from mnn.types import Seed


class TransformerBlock(SequentialLayers):
    r"""The pre-norm block of GPT-2: ``(B, T, D)`` to ``(B, T, D)``.

    ``TransformerBlock(d_model, heads, hidden=None, dropout=0.0, bias=True,
    causal=True, approximate="tanh")`` is built from the parts, and its backward is
    theirs: two ``Residual`` connections in a row,

    .. math::
        u = x + \operatorname{Drop}\big(\operatorname{Attn}(\operatorname{LN}_1(x))\big)
        \qquad (1)

    .. math::
        y = u + \operatorname{Drop}\Big(W_2\, \operatorname{GELU}\big(W_1
            \operatorname{LN}_2(u) + b_1\big) + b_2\Big)  \qquad (2)

    ``Attn`` is a ``MultiHeadAttention`` with ``heads`` heads of width
    ``d_model // heads``, an output projection and (by default) the causal mask;
    :math:`W_1` is ``d_model x hidden`` (``hidden`` defaults to ``4 * d_model``),
    :math:`W_2` the way back; ``Drop`` is ``Dropout(dropout)``.

    Pre-norm (the LayerNorm inside the residual branch, before the sublayer, as
    GPT-2 has it) leaves the identity path of each ``Residual`` untouched, so the
    gradient reaches the input of a deep stack unscaled (``Residual`` Eq. (3)).

    Backward
    --------
    A ``SequentialLayers`` of the two residuals: by the chain rule, (2)'s
    vector-Jacobian product, then (1)'s, each :math:`g + \texttt{block.backward}(g)`.
    Parameters are named ``"attention.block.<i>..."`` and ``"mlp.block.<i>..."``:
    ``i`` = 0 the LayerNorm, 1 the attention (or :math:`W_1`), 3 :math:`W_2`.
    """

    def __init__(self, d_model: int, heads: int, hidden: int | None = None,
                 dropout: float = 0.0, bias: bool = True, causal: bool = True,
                 approximate: str = "tanh", *, rng: Seed = None) -> None:
        d_model = positive_int(self.name, "d_model", d_model)
        heads = positive_int(self.name, "heads", heads)
        if d_model % heads:
            raise ArgumentError(f"{self.name}: expected d_model divisible by heads, got "
                                f"d_model={d_model} and heads={heads}")
        hidden = None if hidden is None else positive_int(self.name, "hidden", hidden)
        dropout = probability(self.name, "dropout", dropout)
        bias, causal = flag(self.name, "bias", bias), flag(self.name, "causal", causal)
        width = 4 * d_model if hidden is None else hidden
        generator = host_generator(rng)
        attention = Residual(SequentialLayers([
            LayerNorm(d_model),
            MultiHeadAttention(d_model // heads, heads, bias, output_projection=True,
                               causal=causal, rng=generator),
            Dropout(dropout, rng=generator)]))  # Eq. (1)
        mlp = Residual(SequentialLayers([
            LayerNorm(d_model),
            LinearLayer(d_model, width, bias, rng=generator),
            GELU(approximate),
            LinearLayer(width, d_model, bias, init="glorot", rng=generator),
            Dropout(dropout, rng=generator)]))  # Eq. (2)
        super().__init__([attention, mlp])
        self.sublayers = {"attention": attention, "mlp": mlp}
        self.d_model, self.heads, self.hidden, self.dropout = d_model, heads, hidden, dropout
        self.bias, self.causal, self.approximate = bias, causal, approximate

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(4, heads=2, hidden=6, dropout=0.2, rng=rng), rng.standard_normal((2, 3, 4)), None
