"""The activation functions, stated once: name -> forward and backward, used by the reference
kernels (fastrnn.reference), Dense (fastrnn.blocks) and the losses.

    ACTIVATIONS[name].forward(a)      g(a)
    ACTIVATIONS[name].backward(d, y)  d ⊙ g'(a), from the output y = g(a) (what a forward keeps)

Names: None (identity), "tanh", "relu", "sigmoid". relu's derivative is 0 where y <= 0 and 1
elsewhere, so a NaN passes its gradient through, as torch's does.
"""
from collections import namedtuple

import numpy as np

__all__ = ["ACTIVATIONS", "sigmoid"]


def sigmoid(a):
    """σ(a) = 1 / (1 + exp(−a)), without overflow warnings (the exponent is always <= 0), in a's dtype."""
    e = np.exp(-np.abs(a))
    return np.where(a >= 0, 1 / (1 + e), e / (1 + e)).astype(a.dtype, copy=False)


Activation = namedtuple("Activation", "forward backward")

ACTIVATIONS = {
    None: Activation(lambda a: a, lambda d, y: d),
    "tanh": Activation(np.tanh, lambda d, y: d * (1 - y * y)),
    "relu": Activation(lambda a: np.maximum(a, 0), lambda d, y: np.where(y <= 0, 0, d)),
    "sigmoid": Activation(sigmoid, lambda d, y: d * y * (1 - y)),
}
