r"""Multi-head scaled dot-product self-attention."""

from __future__ import annotations

import math

import array_api_compat
import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import check_same_placement, flag, positive_int
from mnn.errors import DTypeError, ShapeError, describe
from mnn.initializers import host_generator
from mnn.layers.linear import LinearLayer
from mnn.layers.matrix_product import MatrixProduct
from mnn.layers.softmax import softmax, softmax_vjp
from mnn.types import Seed


class MultiHeadAttention(BaseLayer):
    r"""Self-attention with :math:`H` heads of width :math:`d`: ``(B, T, dH)`` to ``(B, T, dH)``.

    Each of the :math:`T` positions asks a question (query), offers a key and a
    value; it receives the values of all positions, weighted by how well its
    query matches their keys.

    ``MultiHeadAttention(d=64, heads=12, bias=False)`` is the original mnn's layer,
    without an output projection or masks; its checkpoints load as they are. The
    keyword arguments add what a GPT needs:

    * ``output_projection=True``: a ``LinearLayer`` ``W_out`` after the heads are
      merged (Eq. (6)), as ``torch.nn.MultiheadAttention``'s ``out_proj``;
    * ``causal=True``: position :math:`i` attends to positions :math:`j \le i`
      only (a language model must not see the future);
    * per call, ``layer(x, key_padding_mask=mask)``: a boolean ``(B, T)`` array,
      True where position :math:`j` of a sample is padding, which no query then
      attends to (``torch.nn.MultiheadAttention``'s convention for boolean masks).

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

    The masks say which key :math:`j` each query :math:`i` may see: :math:`M_{ij}`
    is true unless :math:`j > i` (``causal``) or :math:`j` is padding. A masked
    score becomes :math:`-\infty`, so its weight :math:`e^{-\infty}` is exactly 0:

    .. math::
        (A_h)_{ij} = \frac{[M_{ij}]\, e^{(S_h)_{ij}}}{\sum_{l} [M_{il}]\, e^{(S_h)_{il}}}
        \text{ (softmax along each row, the key axis)}  \qquad (3)

    A row with no key left (a query whose every visible key is padding) would be
    :math:`0/0`; it gets :math:`A_{i\cdot} = 0` instead, hence a zero output and
    zero gradients, the defined result (torch gives nan there). Without masks,
    :math:`M` is all true and (3) is the plain softmax.

    .. math::
        O_h = A_h V_h,  \qquad (4)

    and the heads are put back side by side, :math:`Y = [O_1, \dots, O_H]`
    (the inverse permutation and reshape).  (5)
    With ``output_projection``, the output is :math:`Y W_o^\top (+ b_o)`.  (6)

    The :math:`1/\sqrt{d}`: if the entries of :math:`q` and :math:`k` have
    variance 1, :math:`q \cdot k` has variance :math:`d`; dividing by
    :math:`\sqrt{d}` keeps the scores of order 1, so the softmax does not saturate.

    Backward, step by step
    ----------------------
    Given :math:`G = \partial \ell / \partial Y`, walk (6) to (1) backwards; every
    step is a vector-Jacobian product already derived elsewhere, and no
    :math:`T \times T` Jacobian per row is ever formed. With ``output_projection``,
    ``W_out.backward`` first turns the gradient of the output into :math:`G`
    (``LinearLayer`` Eq. (2)) and adds its weight gradients.

    *(5) split the heads.* Splitting and merging only move entries, so the
    Jacobian is a permutation matrix and its transpose is the inverse move:

    .. math::
        G_{O_h} = \text{head } h \text{ of } G.  \qquad (7)

    *(4) a matrix product* (``MatrixProduct``, Eqs. (2), (3) there):

    .. math::
        G_{A_h} = G_{O_h} V_h^\top, \qquad G_{V_h} = A_h^\top G_{O_h}.  \qquad (8)

    *(3) softmax along rows.* Row by row, :math:`\partial A_{ij} / \partial S_{il}
    = A_{ij}(\delta_{jl} - A_{il})`, so (``softmax_vjp`` in ``mnn.layers.softmax``)

    .. math::
        (G_{S_h})_{il} = \sum_j (G_{A_h})_{ij} A_{ij} (\delta_{jl} - A_{il})
            = A_{il}\Big((G_{A_h})_{il} - \sum_j (G_{A_h})_{ij} A_{ij}\Big).  \qquad (9)

    The masks need nothing more: a masked score has :math:`A_{il} = 0`, so (9)
    gives it a zero gradient (a constant :math:`-\infty` has no gradient), and a
    row of zeros stays zero. So the backward keeps the attention weights
    :math:`A_h` and nothing else of its own (the matrix products keep their factors).

    *(2) a scaled matrix product* with the factors :math:`Q_h` and :math:`K_h^\top`:
    the scale passes through, and the gradient for :math:`K_h^\top` is transposed back,

    .. math::
        G_{Q_h} = \frac{G_{S_h}}{\sqrt{d}} K_h, \qquad
        G_{K_h} = \Big(Q_h^\top \frac{G_{S_h}}{\sqrt{d}}\Big)^\top
                = \frac{G_{S_h}^\top}{\sqrt{d}} Q_h.  \qquad (10)

    *Merge the heads* of :math:`G_Q, G_K, G_V` back to :math:`T \times D` (the
    inverse of the split, as in (7)).  (11)

    *(1) three linear layers on the same input.* :math:`X` reaches :math:`\ell`
    along three paths, and the chain rule adds them (``LinearLayer`` Eq. (2));
    each ``backward`` also accumulates its own weight gradient
    :math:`G_Q^\top X` and so on (``LinearLayer`` Eq. (3)):

    .. math::
        G_X = G_Q W_q + G_K W_k + G_V W_v.  \qquad (12)

    Cost: the forward's :math:`O(B H T^2 d + B T D^2)`, times about two. A
    sequence of length :math:`T = 0` gives an empty output (and gradient).
    """

    def __init__(self, d: int = 64, heads: int = 12, bias: bool = False, *,
                 output_projection: bool = False, causal: bool = False,
                 rng: Seed = None) -> None:
        super().__init__()
        d, heads = positive_int(self.name, "d", d), positive_int(self.name, "heads", heads)
        bias = flag(self.name, "bias", bias)
        output_projection = flag(self.name, "output_projection", output_projection)
        causal = flag(self.name, "causal", causal)
        self.d, self.heads, self.features = d, heads, d * heads
        self.bias, self.output_projection, self.causal = bias, output_projection, causal
        generator = host_generator(rng)
        self.W_qry, self.W_key, self.W_val = (
            LinearLayer(self.features, self.features, bias=bias, init="glorot", rng=generator)
            for _ in range(3))
        self.sublayers = {"W_qry": self.W_qry, "W_key": self.W_key, "W_val": self.W_val}
        self.W_out = None
        if output_projection:
            self.W_out = LinearLayer(self.features, self.features, bias=bias, init="glorot",
                                     rng=generator)
            self.sublayers["W_out"] = self.W_out
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

    def _masks(self, xp, inputs, padding, dtype):
        r"""``(bias, blind)``: ``bias`` is 0 where Eq. (3)'s :math:`M` is true and
        :math:`-\infty` where it is not, ``(B or 1, 1, T, T)``, to be added to the scores;
        ``blind`` marks the queries left with no key (only padding can do that). Either
        is None when it has nothing to mark. Built at the size of the masks, not of the
        scores: adding a bias costs one pass over the scores, as cheap as it gets."""
        batch, length, _ = inputs.shape
        visible = None
        if self.causal:
            device = array_api_compat.device(inputs)
            visible = self.cached(("causal", length, type(inputs), device),
                                  lambda: _key_at_or_before_query(xp, length, device))
        if padding is not None:
            check_key_padding_mask(self, xp, padding, inputs)
            keys = xp.reshape(~padding, (batch, 1, 1, length))
            visible = keys if visible is None else keys & visible
        if visible is None:
            return None, None
        blind = ~xp.any(visible, axis=-1, keepdims=True) if padding is not None else None
        if blind is not None:  # a blind row sees every key, then its weights are set to 0
            visible = visible | blind
        zeros = xp.zeros(visible.shape, dtype=dtype, device=array_api_compat.device(inputs))
        return xp.where(visible, zeros, -math.inf), blind

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        layer = cls(d=2, heads=2, bias=True, output_projection=True, causal=True, rng=rng)
        return layer, rng.standard_normal((2, 3, 4)), None

    def compute_forward(self, xp, inputs, feedbacks, key_padding_mask=None):
        """``key_padding_mask``: a boolean ``(B, T)`` array of the inputs' library and device,
        True at padding (Eq. (3))."""
        q, k, v = (self._split(xp, layer(inputs))  # Eq. (1)
                   for layer in (self.W_qry, self.W_key, self.W_val))
        scores = self._scores((q, xp.matrix_transpose(k)))  # Eq. (2)
        scores *= 1.0 / math.sqrt(self.d)
        bias, blind = self._masks(xp, inputs, key_padding_mask, scores.dtype)
        if bias is not None:
            scores += bias  # -inf where M is false: exp gives exactly 0 there, Eq. (3)
        weights = softmax(xp, scores, axis=-1)  # Eq. (3)
        if blind is not None:
            weights = xp.where(blind, 0.0, weights)  # Eq. (3): zeros, not 0/0
        self.save_for_backward(weights)
        outputs = self._merge(xp, self._mix((weights, v)))  # Eqs. (4), (5)
        return outputs if self.W_out is None else self.W_out(outputs)  # Eq. (6)

    def compute_backward(self, xp, gradients, weights):
        if self.W_out is not None:
            gradients = self.W_out.backward(gradients)  # Eq. (6)
        grad_weights, grad_v = self._mix.backward(self._split(xp, gradients))  # Eqs. (7), (8)
        grad_scores = softmax_vjp(xp, weights, grad_weights, axis=-1)  # Eq. (9)
        grad_q, grad_kt = self._scores.backward(grad_scores / math.sqrt(self.d))  # Eq. (10)
        grad_k = xp.matrix_transpose(grad_kt)
        return (self.W_qry.backward(self._merge(xp, grad_q))  # Eqs. (11), (12)
                + self.W_key.backward(self._merge(xp, grad_k))
                + self.W_val.backward(self._merge(xp, grad_v)))


def _key_at_or_before_query(xp, length: int, device):
    r"""The causal mask of Eq. (3): True where key :math:`j \le` query :math:`i`, ``(T, T)``."""
    positions = xp.arange(length, device=device)
    return xp.reshape(positions, (length, 1)) >= positions


def check_key_padding_mask(layer, xp, mask, inputs) -> None:
    """A boolean ``(B, T)`` array from the inputs' library and device."""
    check_same_placement(layer, mask, inputs, "key_padding_mask", "inputs", dtype=False)
    if not hasattr(mask, "dtype") or mask.dtype != xp.bool:
        raise DTypeError(f"{layer.name}: expected key_padding_mask to be a boolean array (True "
                         f"marks padding), got {describe(mask)}")
    expected = tuple(inputs.shape[:2])
    if tuple(mask.shape) != expected:
        raise ShapeError(f"{layer.name}: expected key_padding_mask of shape {expected} (batch, "
                         f"time) for inputs of shape {tuple(inputs.shape)}, got {describe(mask)}")
