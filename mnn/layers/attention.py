r"""Multi-head scaled dot-product self-attention."""

from __future__ import annotations

import math

from mnn.base import BaseLayer
from mnn.checks import positive_int
from mnn.initializers import host_generator
from mnn.layers.linear import LinearLayer
from mnn.layers.matrix_product import MatrixProduct
from mnn.layers.softmax import softmax, softmax_vjp
from mnn.registry import register_layer
from mnn.types import Seed


@register_layer
class MultiHeadAttention(BaseLayer):
    r"""Self-attention with :math:`H` heads of width :math:`d`: ``(B, T, dH)`` to ``(B, T, dH)``.

    Each of the :math:`T` positions asks a question (query), offers a key and a
    value; it receives the values of all positions, weighted by how well its
    query matches their keys. There is no output projection (the original mnn's layer).

    Forward
    -------
    For one sample :math:`X \in \mathbb{R}^{T \times D}`, :math:`D = dH`, the
    ``LinearLayer`` sublayers ``W_qry``, ``W_key``, ``W_val`` (bias optional) give

    .. math::
        Q = X W_q^\top, \qquad K = X W_k^\top, \qquad V = X W_v^\top.  \qquad (1)

    Head :math:`h` takes columns :math:`hd, \dots, (h+1)d - 1` of each:
    :math:`Q_h, K_h, V_h \in \mathbb{R}^{T \times d}` (a reshape to
    ``(B, T, H, d)`` and a permutation to ``(B, H, T, d)``). Per head,

    .. math::
        S_h = \frac{Q_h K_h^\top}{\sqrt{d}}  \qquad (2)

    .. math::
        A_h = \operatorname{softmax}(S_h) \text{ along each row (the key axis)}, \qquad
        (A_h)_{ij} = \frac{e^{(S_h)_{ij}}}{\sum_{l} e^{(S_h)_{il}}}  \qquad (3)

    .. math::
        O_h = A_h V_h,  \qquad (4)

    and the heads are put back side by side, :math:`Y = [O_1, \dots, O_H]`
    (the inverse permutation and reshape).  (5)

    The :math:`1/\sqrt{d}`: if the entries of :math:`q` and :math:`k` have
    variance 1, :math:`q \cdot k` has variance :math:`d`; dividing by
    :math:`\sqrt{d}` keeps the scores of order 1, so the softmax does not saturate.

    Backward, step by step
    ----------------------
    Given :math:`G = \partial \ell / \partial Y`, walk (5) to (1) backwards; every
    step is a vector-Jacobian product already derived elsewhere, and no
    :math:`T \times T` Jacobian per row is ever formed.

    *(5) split the heads.* Splitting and merging only move entries, so the
    Jacobian is a permutation matrix and its transpose is the inverse move:

    .. math::
        G_{O_h} = \text{head } h \text{ of } G.  \qquad (6)

    *(4) a matrix product* (``MatrixProduct``, Eqs. (2), (3) there):

    .. math::
        G_{A_h} = G_{O_h} V_h^\top, \qquad G_{V_h} = A_h^\top G_{O_h}.  \qquad (7)

    *(3) softmax along rows.* Row by row, :math:`\partial A_{ij} / \partial S_{il}
    = A_{ij}(\delta_{jl} - A_{il})`, so (``softmax_vjp`` in ``mnn.layers.softmax``)

    .. math::
        (G_{S_h})_{il} = \sum_j (G_{A_h})_{ij} A_{ij} (\delta_{jl} - A_{il})
            = A_{il}\Big((G_{A_h})_{il} - \sum_j (G_{A_h})_{ij} A_{ij}\Big).  \qquad (8)

    *(2) a scaled matrix product* with the factors :math:`Q_h` and :math:`K_h^\top`:
    the scale passes through, and the gradient for :math:`K_h^\top` is transposed back,

    .. math::
        G_{Q_h} = \frac{G_{S_h}}{\sqrt{d}} K_h, \qquad
        G_{K_h} = \Big(Q_h^\top \frac{G_{S_h}}{\sqrt{d}}\Big)^\top
                = \frac{G_{S_h}^\top}{\sqrt{d}} Q_h.  \qquad (9)

    *Merge the heads* of :math:`G_Q, G_K, G_V` back to :math:`T \times D` (the
    inverse of the split, as in (6)).  (10)

    *(1) three linear layers on the same input.* :math:`X` reaches :math:`\ell`
    along three paths, and the chain rule adds them (``LinearLayer`` Eq. (2));
    each ``backward`` also accumulates its own weight gradient
    :math:`G_Q^\top X` and so on (``LinearLayer`` Eq. (3)):

    .. math::
        G_X = G_Q W_q + G_K W_k + G_V W_v.  \qquad (11)

    Cost: the forward's :math:`O(B H T^2 d + B T D^2)`, times about two.
    """

    def __init__(self, d: int = 64, heads: int = 12, bias: bool = False, *,
                 rng: Seed = None) -> None:
        super().__init__()
        positive_int(self.name, "d", d)
        positive_int(self.name, "heads", heads)
        if not isinstance(bias, bool):
            raise ValueError(f"{self.name}: expected bias to be True or False, got {bias!r}")
        self.args = {"d": d, "heads": heads, "bias": bias}
        self.d, self.heads, self.features = d, heads, d * heads
        generator = host_generator(rng)
        self.W_qry, self.W_key, self.W_val = (
            LinearLayer(self.features, self.features, bias=bias, init="glorot", rng=generator)
            for _ in range(3))
        self.sublayers = {"W_qry": self.W_qry, "W_key": self.W_key, "W_val": self.W_val}
        self._scores = MatrixProduct()  # Q_h K_h^T, Eq. (2)
        self._mix = MatrixProduct()  # A_h V_h, Eq. (4)
        self.expect_inputs(min_rank=3, max_rank=3, sizes={-1: self.features})

    def _split(self, xp, x):
        """``(B, T, H d)`` -> ``(B, H, T, d)``: one ``(T, d)`` matrix per sample and head."""
        batch, length, _ = x.shape
        return xp.permute_dims(xp.reshape(x, (batch, length, self.heads, self.d)), (0, 2, 1, 3))

    def _merge(self, xp, x):
        """``(B, H, T, d)`` -> ``(B, T, H d)``: the heads side by side again."""
        batch, _, length, _ = x.shape
        return xp.reshape(xp.permute_dims(x, (0, 2, 1, 3)), (batch, length, self.features))

    def compute_forward(self, xp, inputs, feedbacks):
        q, k, v = (self._split(xp, layer(inputs))  # Eq. (1)
                   for layer in (self.W_qry, self.W_key, self.W_val))
        scores = self._scores((q, xp.matrix_transpose(k))) / math.sqrt(self.d)  # Eq. (2)
        weights = softmax(xp, scores, axis=-1)  # Eq. (3)
        self.save_for_backward(weights)
        return self._merge(xp, self._mix((weights, v)))  # Eqs. (4), (5)

    def compute_backward(self, xp, gradients, weights):
        grad_weights, grad_v = self._mix.backward(self._split(xp, gradients))  # Eqs. (6), (7)
        grad_scores = softmax_vjp(xp, weights, grad_weights, axis=-1)  # Eq. (8)
        grad_q, grad_kt = self._scores.backward(grad_scores / math.sqrt(self.d))  # Eq. (9)
        grad_k = xp.matrix_transpose(grad_kt)
        return (self.W_qry.backward(self._merge(xp, grad_q))  # Eqs. (10), (11)
                + self.W_key.backward(self._merge(xp, grad_k))
                + self.W_val.backward(self._merge(xp, grad_v)))
