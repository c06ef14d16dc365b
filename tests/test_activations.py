"""The float32 activations of the compiled kernels (csrc/mathfun.h) to within 3 ulp of the exact value.

A layer of one unit whose products are the identity shows them bare, one input per batch row: an RNN
with w_ih = 1, w_hh = 0 and no bias gives out = tanh(x); a GRU whose z row of w_ih is 1 (the r and n
rows 0, w_hh = 0, h0 = 1) gives
h' = (1 - z) tanh(0) + z * 1 = sigmoid(x), each with no other rounding. The kernels' own bound, checked
over every float outside the tests, is 2.5 ulp (tanh) and 3 (sigmoid).
"""
import numpy as np
import pytest

from fastrnn import functional as F
from conftest import COMPILED

MAX_ULP = 3.0


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


def layer(x, z_row):
    """x as one step of a batch of len(x) rows, one input and one unit; w_ih's rows (r, z, n) or row."""
    w_ih = np.array([[0.0], [1.0], [0.0]] if z_row else [[1.0]], np.float32)
    return x.reshape(1, x.size, 1), w_ih, np.zeros((w_ih.shape[0], 1), np.float32)


@pytest.mark.parametrize("backend", COMPILED)
def test_tanh_within_3_ulp(backend):
    x = grid()
    xs, w_ih, w_hh = layer(x, False)
    out = F.rnn_forward(xs, np.zeros((x.size, 1), np.float32), w_ih, w_hh, backend=backend)[0]
    got = out.reshape(-1)
    assert ulps(got, np.tanh(x.astype(np.float64))).max() <= MAX_ULP
    assert np.all(np.abs(got) <= 1) and np.array_equal(np.signbit(got), np.signbit(x))


@pytest.mark.parametrize("backend", COMPILED)
def test_sigmoid_within_3_ulp(backend):
    x = grid()
    xs, w_ih, w_hh = layer(x, True)
    out = F.gru_forward(xs, np.ones((x.size, 1), np.float32), w_ih, w_hh, backend=backend)[0]
    got = out.reshape(-1)
    exact = 1 / (1 + np.exp(-x.astype(np.float64)))
    assert ulps(got, exact).max() <= MAX_ULP
    assert np.all((got >= 0) & (got <= 1))
