r"""Batch normalisation of each channel over the batch (and the positions), with running
statistics for evaluation."""

from __future__ import annotations

import math

import numpy as np

from mnn.base import BaseLayer, Example
from mnn.checks import allocating, finite_non_negative, flag, positive_int, probability
from mnn.errors import ShapeError
from mnn.initializers import ones, zeros
from mnn.types import Array, Namespace


class BatchNorm1d(BaseLayer):
    r"""Normalise each channel over the batch to mean 0 and variance 1, then scale and shift.

    ``BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)``, as ``torch.nn.BatchNorm1d``: inputs are
    :math:`(N, C)` or :math:`(N, C, L)` with :math:`C` = ``num_features``. Each
    channel :math:`c` is normalised over its :math:`m = N` (or :math:`N L`) entries
    :math:`x_1, \dots, x_m`: every sample, and every position of every sample.
    :math:`\gamma` (``params['w']``, ones at first) and :math:`\beta`
    (``params['b']``, zeros at first) have shape :math:`(C,)`; ``affine=False``
    leaves them out (:math:`\gamma = 1, \beta = 0`). Below, everything is one
    channel's; the channels are independent.

    Forward in training mode
    ------------------------
    .. math::
        \mu = \frac1m \sum_{i} x_i, \qquad
        \sigma^2 = \frac1m \sum_{i} (x_i - \mu)^2, \qquad
        r = \frac{1}{\sqrt{\sigma^2 + \epsilon}}  \qquad (1)

    .. math::
        \hat x_i = (x_i - \mu)\, r, \qquad y_i = \gamma \hat x_i + \beta  \qquad (2)

    :math:`\sigma^2` is the biased variance (divided by :math:`m`), as in torch. A
    channel of one entry (:math:`m = 1`) has no spread to normalise by, so training
    mode refuses it, as torch does.

    Running statistics
    ------------------
    With ``track_running_stats`` (the default) the layer keeps, per channel, a running
    mean :math:`\bar\mu` (zeros at first) and a running variance :math:`\bar v` (ones at
    first) in ``buffers['running_mean']`` and ``buffers['running_var']``: they are saved
    in checkpoints, and no gradient or optimizer touches them. Each training forward
    updates them with torch's convention for the momentum :math:`\alpha`, and the
    *unbiased* variance of the batch:

    .. math::
        \bar\mu \leftarrow (1 - \alpha)\, \bar\mu + \alpha\, \mu, \qquad
        \bar v \leftarrow (1 - \alpha)\, \bar v + \alpha\, \frac{m}{m - 1}\, \sigma^2
        \qquad (3)

    ``momentum`` is a number in [0, 1]. torch's ``momentum=None`` (a cumulative average
    over all batches, counted in its ``num_batches_tracked`` buffer) is not offered, so
    mnn keeps no such counter: drop ``num_batches_tracked`` from a torch state dict
    before loading it.

    Forward in evaluation mode
    --------------------------
    After ``eval()``, the running statistics take the place of the batch's, so that a
    sample's output does not depend on the rest of its batch:

    .. math::
        \bar r = \frac{1}{\sqrt{\bar v + \epsilon}}, \qquad
        \hat x_i = (x_i - \bar\mu)\, \bar r, \qquad y_i = \gamma \hat x_i + \beta
        \qquad (4)

    Without ``track_running_stats`` there are no running statistics, and evaluation mode
    normalises with the batch's statistics too, Eqs. (1)-(2) (as torch does).

    Jacobian in training mode
    -------------------------
    Every :math:`\hat x_j` depends on every :math:`x_k` of its channel, through
    :math:`\mu` and :math:`r`. Step by step, from (1):

    .. math::
        \frac{\partial \mu}{\partial x_k} = \frac1m  \qquad (5)

    .. math::
        \frac{\partial \sigma^2}{\partial x_k}
            = \frac2m \sum_i (x_i - \mu) \Big(\delta_{ik} - \frac1m\Big)
            = \frac2m (x_k - \mu)  \qquad (6)

    (the :math:`1/m` term vanishes: the deviations sum to zero), and by the chain rule
    on :math:`r = (\sigma^2 + \epsilon)^{-1/2}`,

    .. math::
        \frac{\partial r}{\partial x_k} = -\frac12 r^3 \frac{\partial \sigma^2}{\partial x_k}
            = -\frac{r^3}{m} (x_k - \mu) = -\frac{r}{m}\, \hat x_k  \qquad (7)

    The product rule on :math:`\hat x_j = (x_j - \mu)\, r`, with (5) and (7):

    .. math::
        \frac{\partial \hat x_j}{\partial x_k}
            = \Big(\delta_{jk} - \frac1m\Big) r + (x_j - \mu) \frac{\partial r}{\partial x_k}
            = \frac{r}{m} \big(m\,\delta_{jk} - 1 - \hat x_j \hat x_k\big)  \qquad (8)

    an :math:`m \times m` matrix per channel: the identity, minus the projection on the
    constant direction (the path through :math:`\mu`), minus the projection on
    :math:`\hat x` (the path through :math:`\sigma^2`). Dropping the last two terms
    gives the simplified backward that treats the statistics as constants; it is wrong
    in training mode, and gradcheck catches it.

    Vector-Jacobian products
    ------------------------
    Given :math:`g_i = \partial \ell / \partial y_i`, the parameters enter (2) and (4)
    linearly; summed over the channel's :math:`m` entries,

    .. math::
        \frac{\partial \ell}{\partial \gamma} = \sum_i g_i\, \hat x_i, \qquad
        \frac{\partial \ell}{\partial \beta} = \sum_i g_i.  \qquad (9)

    :math:`\hat g_i = \gamma g_i` is the gradient with respect to :math:`\hat x_i`. In
    training mode, (8) contracts in :math:`O(m)` per channel, never forming the
    matrix:

    .. math::
        \frac{\partial \ell}{\partial x_k} = \sum_j \hat g_j \frac{r}{m}
            \big(m\,\delta_{jk} - 1 - \hat x_j \hat x_k\big)
        = r \Big(\hat g_k - \overline{\hat g} - \hat x_k\, \overline{\hat g \hat x}\Big)
        \qquad (10)

    where the bars are means over the channel's :math:`m` entries. In evaluation mode
    the statistics are constants, (4) is an affine map of each entry, and its Jacobian is
    diagonal:

    .. math::
        \frac{\partial \ell}{\partial x_k} = \bar r\, \hat g_k  \qquad (11)

    The forward keeps :math:`\hat x` (the size of the input) and :math:`r` (one number
    per channel). A channel whose variance overflows the dtype (entries beyond about
    :math:`10^{19}` in float32) gives nan, as in torch, rather than a finite wrong value.
    """

    #: The ranks of the inputs: (N, C) or (N, C, L).
    ranks = (2, 3)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, track_running_stats: bool = True) -> None:
        super().__init__()
        self.num_features = positive_int(self.name, "num_features", num_features)
        self.eps = finite_non_negative(self.name, "eps", eps)
        self.momentum = probability(self.name, "momentum", momentum)
        self.affine = flag(self.name, "affine", affine)
        self.track_running_stats = flag(self.name, "track_running_stats", track_running_stats)
        channels = (self.num_features,)
        with allocating(self.name, *[channels] * (2 * self.affine + 2 * self.track_running_stats)):
            if self.affine:
                self.add_param("w", ones(channels))
                self.add_param("b", zeros(channels))
            if self.track_running_stats:
                self.add_buffer("running_mean", zeros(channels))
                self.add_buffer("running_var", ones(channels))
        self.expect_inputs(min_rank=self.ranks[0], max_rank=self.ranks[-1],
                           sizes={1: self.num_features})

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        layer = cls(3)
        layer.params["w"] = np.array([1.5, 0.5, -2.0])  # a scale and shift that both matter
        layer.params["b"] = np.array([0.1, -0.3, 0.2])
        return layer, 2 * rng.standard_normal((4, 3)) + 1, None

    def compute_forward(self, xp: Namespace, inputs: Array, feedbacks: Array) -> Array:
        # Every axis but the channels' (axis 1): N, then the positions (L; H and W).
        axes = (0, *range(2, inputs.ndim))
        per_channel = (self.num_features, *(1,) * (inputs.ndim - 2))  # broadcasts on (N, C, ...)
        count = math.prod(inputs.shape) // self.num_features  # m
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            if self.training and count == 1:
                raise ShapeError(f"{self.name}: expected more than 1 value per channel in "
                                 f"training mode (one value has no variance to normalise by), "
                                 f"got inputs of shape {tuple(inputs.shape)}")
            mean = xp.mean(inputs, axis=axes, keepdims=True)  # mu, Eq. (1)
            normalized = inputs - mean
            variance = xp.mean(normalized * normalized, axis=axes, keepdims=True)  # Eq. (1)
            if self.training and self.track_running_stats:  # Eq. (3)
                self._update_running(xp, mean, variance * (count / (count - 1)))
        else:  # Eq. (4)
            normalized = inputs - xp.reshape(self.buffers["running_mean"], per_channel)
            variance = xp.reshape(self.buffers["running_var"], per_channel)
        rstd = 1.0 / xp.sqrt(variance + self.eps)  # r, Eq. (1) (r-bar, Eq. (4))
        # A variance that overflows (entries past ~1e19 in float32) gives nan, as torch does,
        # not r = 0 and a finite wrong output. One number per channel: no pass over the inputs.
        rstd = xp.where(xp.isfinite(variance), rstd, xp.nan)
        normalized *= rstd  # x-hat, Eq. (2) (Eq. (4))
        self.save_for_backward(normalized, rstd, use_batch)
        if not self.affine:
            return normalized
        return (normalized * xp.reshape(self.params["w"], per_channel)
                + xp.reshape(self.params["b"], per_channel))  # Eq. (2) (Eq. (4))

    def _update_running(self, xp, mean, unbiased_variance):
        """Eq. (3): move the running statistics by ``momentum`` toward the batch's."""
        alpha = self.momentum
        for key, batch in (("running_mean", mean), ("running_var", unbiased_variance)):
            self.buffers[key] = ((1.0 - alpha) * self.buffers[key]
                                 + alpha * xp.reshape(batch, (self.num_features,)))

    def compute_backward(self, xp: Namespace, gradients: Array, normalized: Array, rstd: Array,
                         used_batch: bool) -> Array:
        axes = (0, *range(2, gradients.ndim))
        per_channel = (self.num_features, *(1,) * (gradients.ndim - 2))
        g = gradients
        if self.affine:
            self.add_grad("w", xp.reshape(xp.sum(g * normalized, axis=axes),
                                          (self.num_features,)))  # Eq. (9)
            self.add_grad("b", xp.reshape(xp.sum(g, axis=axes), (self.num_features,)))  # Eq. (9)
            g = g * xp.reshape(self.params["w"], per_channel)  # g-hat
        if not used_batch:
            return g * rstd  # Eq. (11)
        # Eq. (10); both means are taken before the new array g-hat - mean is changed in place
        projection = xp.mean(g * normalized, axis=axes, keepdims=True)
        grad = g - xp.mean(g, axis=axes, keepdims=True)
        grad -= normalized * projection
        grad *= rstd
        return grad


class BatchNorm2d(BatchNorm1d):
    r"""Batch normalisation of images: ``BatchNorm1d`` over :math:`(N, H, W)`.

    ``BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)``, as ``torch.nn.BatchNorm2d``: inputs are
    :math:`(N, C, H, W)`, and each channel is normalised over its :math:`m = N H W`
    entries (every pixel of every image).

    Forward, running statistics and backward
    ----------------------------------------
    They are ``BatchNorm1d``'s, Eqs. (1)-(11) of its docstring, with that :math:`m`:
    the code is the same, reducing over every axis but the channels'.
    """

    #: The rank of the inputs: (N, C, H, W).
    ranks = (4,)

    @classmethod
    def example(cls, rng: np.random.Generator) -> Example:
        """A small instance, its inputs and feedbacks: what ``gradcheck`` checks."""
        layer, _, _ = super().example(rng)
        return layer, 2 * rng.standard_normal((2, 3, 2, 3)) + 1, None
