"""Constructors refuse bad arguments where they are given, with the layer's name and the value.

A bad size or axis used to pass the constructor and fail (or not) at the first
forward; from a checkpoint it could allocate gigabytes first.
"""

import math

import pytest

import mnn

LAYERS = [
    (lambda: mnn.LinearLayer(0, 3), r"LinearLayer: expected in_features to be a positive int, "
                                    r"got 0"),
    (lambda: mnn.LinearLayer(-1, 3), r"LinearLayer: expected in_features to be a positive int, "
                                     r"got -1"),
    (lambda: mnn.LinearLayer(2.5, 3), r"LinearLayer: expected in_features to be a positive int, "
                                      r"got 2.5"),
    (lambda: mnn.LinearLayer(3, True), r"LinearLayer: expected out_features to be a positive "
                                       r"int, got True"),
    (lambda: mnn.LinearLayer(3, 2, bias="yes"), r"LinearLayer: expected bias to be True or False"),
    (lambda: mnn.SoftmaxLayer(axis="a"), r"SoftmaxLayer: expected axis to be an int, got 'a'"),
    (lambda: mnn.LogSoftmaxLayer(axis=1.0), r"LogSoftmaxLayer: expected axis to be an int"),
    (lambda: mnn.LogSoftmaxLayer(sample_shape=5), r"LogSoftmaxLayer: expected sample_shape to be "
                                                  r"a tuple of positive ints, got 5"),
    (lambda: mnn.LogSoftmaxLayer(3, 0), r"LogSoftmaxLayer: expected every entry of sample_shape "
                                        r"to be a positive int, got 0"),
    (lambda: mnn.CrossEntropyLossLayer(sample_shape="10"), r"CrossEntropyLossLayer: expected "
                                                           r"sample_shape to be a tuple"),
    (lambda: mnn.NllLossLayer(axis=None), r"NllLossLayer: expected axis to be an int"),
    (lambda: mnn.MultiHeadAttention(d=0), r"MultiHeadAttention: expected d to be a positive int"),
    (lambda: mnn.MultiHeadAttention(heads=2.0), r"MultiHeadAttention: expected heads to be a "
                                                r"positive int"),
    (lambda: mnn.LinearLayer(3, 2, rng=-1), r"rng: expected a non-negative int seed or a "
                                            r"numpy.random.Generator, got -1"),
]


@pytest.mark.parametrize("make, message", LAYERS)
def test_layers_refuse_bad_arguments(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


@pytest.mark.parametrize("optimizer", [mnn.optim.SGD, mnn.optim.Adam, mnn.optim.AdamW])
@pytest.mark.parametrize("lr", [math.nan, math.inf, -math.inf, -0.1, "fast"])
def test_optimizers_refuse_a_learning_rate_that_is_not_finite_and_non_negative(optimizer, lr):
    with pytest.raises(ValueError, match=rf"{optimizer.__name__}: expected lr to be "):
        optimizer(mnn.LinearLayer(2, 2, rng=0), lr=lr)


@pytest.mark.parametrize("hyper, message", [
    ({"betas": (0.9, math.nan)}, r"expected betas"),
    ({"betas": 0.9}, r"expected betas = \(beta1, beta2\)"),
    ({"eps": math.inf}, r"expected eps to be finite"),
    ({"weight_decay": math.nan}, r"expected weight_decay to be finite"),
])
def test_adam_refuses_bad_hyperparameters(hyper, message):
    with pytest.raises(ValueError, match=rf"Adam: {message}"):
        mnn.optim.Adam(mnn.LinearLayer(2, 2, rng=0), **hyper)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True])
def test_manual_seed_refuses_what_is_not_a_seed(seed):
    with pytest.raises(ValueError, match=r"manual_seed: expected a non-negative int"):
        mnn.manual_seed(seed)
