"""The float32 activations of the compiled kernels (csrc/mathfun.h) to within 3 ulp of the exact value.

A layer of one unit whose products are the identity shows them bare, one input per batch row: an RNN
with w_ih = 1, w_hh = 0, h0 = 0 and no bias gives out = tanh(x); a GRU whose z row of w_ih is 1 (the
r and n rows 0, w_hh = 0, h0 = 1) gives h' = (1 - z) tanh(0) + z * 1 = sigmoid(x), each with no other
rounding. The kernels' own bound, checked outside the tests over every 5th float32 bit pattern, is
2.5 ulp (tanh) and 3 (sigmoid).
"""
import numpy as np
import pytest

from fastrnn import functional as F
from conftest import COMPILED

MAX_ULP = 3.0

# activation: (layer, w_ih (its rows), h0's value, the exact function in float64, its range)
LAYERS = {
    "tanh": (F.rnn_forward, [[1.0]], 0.0, np.tanh, (-1, 1)),
    "sigmoid": (F.gru_forward, [[0.0], [1.0], [0.0]], 1.0, lambda x: 1 / (1 + np.exp(-x)), (0, 1)),
}


def grid():
    rng = np.random.default_rng(11)
    tiny = np.geomspace(1e-30, 1e-2, 300)
    xs = np.concatenate([np.linspace(-20, 20, 4001), rng.uniform(-90, 90, 2000), tiny, -tiny,
                         [0.0, 0.625, -0.625, 0.3465, 87.0, -87.0, 100.0, -100.0]])
    return xs.astype(np.float32)


def ulps(got, exact):
    """|got - exact| in units of the last place of float32(exact); only results above 1e-37."""
    keep = np.abs(exact) > 1e-37
    step = np.spacing(np.abs(exact[keep]).astype(np.float32)).astype(np.float64)
    return np.abs(got[keep].astype(np.float64) - exact[keep]) / step


@pytest.mark.parametrize("activation", LAYERS)
@pytest.mark.parametrize("backend", COMPILED)
def test_activation_within_3_ulp(backend, activation):
    forward, rows, h0, exact, (lo, hi) = LAYERS[activation]
    x = grid()
    w_ih = np.array(rows, np.float32)
    out = forward(x.reshape(1, x.size, 1), np.full((x.size, 1), h0, np.float32), w_ih, np.zeros_like(w_ih),
                  backend=backend)[0]
    got = out.reshape(-1)
    assert ulps(got, exact(x.astype(np.float64))).max() <= MAX_ULP
    assert np.all((got >= lo) & (got <= hi))
    if activation == "tanh":
        assert np.array_equal(np.signbit(got), np.signbit(x))
