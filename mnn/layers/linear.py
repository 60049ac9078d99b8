r"""Fully connected (affine) layer."""

from __future__ import annotations

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import allocating, flag, one_of, positive_int
from mnn.initializers import glorot_uniform, he_uniform, host_generator, zeros
from mnn.types import Seed


class LinearLayer(BaseLayer):
    r"""Affine map :math:`y = x W^\top + b`, applied to the last axis.

    Shapes: :math:`x \in \mathbb{R}^{N \times n}` (any leading dimensions are
    flattened into the batch :math:`N`), :math:`W \in \mathbb{R}^{m \times n}`
    (``params['w']``, PyTorch's ``(out, in)`` layout), :math:`b \in \mathbb{R}^{m}`.

    Forward
    -------
    .. math::
        y_{ik} = \sum_{j=1}^{n} x_{ij} W_{kj} + b_k  \qquad (1)

    Jacobians
    ---------
    Differentiate (1) entry by entry:

    .. math::
        \frac{\partial y_{ik}}{\partial x_{i'j}} = \delta_{ii'}\, W_{kj}, \qquad
        \frac{\partial y_{ik}}{\partial W_{k'j}} = \delta_{kk'}\, x_{ij}, \qquad
        \frac{\partial y_{ik}}{\partial b_{k'}} = \delta_{kk'}.

    The first is an :math:`(Nm) \times (Nn)` matrix, block diagonal with :math:`W`
    in every block; nobody should build it.

    Vector-Jacobian products
    ------------------------
    Given :math:`g_{ik} = \partial \ell / \partial y_{ik}`, the chain rule sums
    over every output entry, and each Kronecker delta collapses one sum:

    .. math::
        \frac{\partial \ell}{\partial x_{i'j}} = \sum_{i,k} g_{ik}\, \delta_{ii'} W_{kj}
            = (g W)_{i'j}  \qquad (2)

    .. math::
        \frac{\partial \ell}{\partial W_{k'j}} = \sum_{i,k} g_{ik}\, \delta_{kk'} x_{ij}
            = (g^\top x)_{k'j}  \qquad (3)

    .. math::
        \frac{\partial \ell}{\partial b_{k'}} = \sum_{i} g_{ik'}  \qquad (4)

    Three matrix products instead of a block-diagonal Jacobian: :math:`O(Nnm)`
    time and no memory beyond the results. When nobody needs (2), as for the first
    layer of a network fed with data, set ``input_grad = False``: ``backward`` then
    skips that product and returns ``None``.

    Initialisation: He-uniform weights (variance :math:`2/n`, for layers followed by
    ReLU; see ``mnn.initializers``) or, with ``init="glorot"``, Glorot-uniform
    (variance :math:`2/(n+m)`); zero bias.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 init: str = "he", rng: Seed = None) -> None:
        super().__init__()
        in_features = positive_int(self.name, "in_features", in_features)
        out_features = positive_int(self.name, "out_features", out_features)
        bias = flag(self.name, "bias", bias)
        init = one_of(self.name, "init", init, ("he", "glorot"))
        self.in_features, self.out_features = in_features, out_features
        self.bias, self.init = bias, init
        generator = host_generator(rng)
        shape = (out_features, in_features)
        with allocating(self.name, *([shape, (out_features,)] if bias else [shape])):
            if init == "he":
                self.add_param("w", he_uniform(shape, in_features, generator))
            else:
                self.add_param("w", glorot_uniform(shape, in_features, out_features, generator))
            if bias:
                self.add_param("b", zeros((out_features,)))
        self.expect_inputs(min_rank=1, sizes={-1: in_features})

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        return cls(4, 3, rng=rng), rng.standard_normal((2, 4)), None

    def compute_forward(self, xp, inputs, feedbacks):
        self.save_for_backward(inputs)
        outputs = inputs @ self.params["w"].T  # Eq. (1)
        if self.bias:
            outputs += self.params["b"]
        return outputs

    def compute_backward(self, xp, gradients, inputs):
        # Nobody needs Eq. (2) for the first layer of a network (input_grad False): skip a GEMM.
        grad_inputs = gradients @ self.params["w"] if self.input_grad else None
        flat_g, flat_x = gradients, inputs
        if len(inputs.shape) != 2:  # leading dimensions are all batch: flatten them
            flat_g = xp.reshape(gradients, (-1, self.out_features))
            flat_x = xp.reshape(inputs, (-1, self.in_features))
        # Eq. (3): g^T x, a sum over the batch; the adapter picks the library's fastest product
        self.add_grad("w", self.placement.backend.transpose_matmul(flat_g, flat_x))
        if self.bias:
            self.add_grad("b", xp.sum(flat_g, axis=0))  # Eq. (4)
        return grad_inputs
