"""`grads=` of the functional backwards: the weight and bias gradients added into the caller's arrays.

For every backend, kernel, dtype and with or without bias: the arrays given come back (the same
objects) holding what they held plus the gradients a plain backward returns, dx and dh0 unchanged;
the cells, which use it, still accumulate over steps. Every refusal (wrong type, dtype, shape,
layout, read-only, memory shared with an input or another gradient) leaves the arrays untouched.
"""
import numpy as np
import pytest

import fastrnn
from conftest import BACKENDS, KERNEL_IDS, KERNELS, assert_close, backward_fn, forward_fn, make_problem, make_upstream

NAMES = ("dw_ih", "dw_hh", "db_ih", "db_hh")


def _forward(kind, opts, p, backend):
    return forward_fn(kind)(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], backend=backend,
                            lengths=np.array([5, 2, 0]), **opts)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_grads_are_added_into_the_given_arrays(backend, kind, opts, dtype, bias):
    p = make_problem(kind, 5, 3, 4, 7, dtype=dtype, seed=2, bias=bias)
    out, _, cache = _forward(kind, opts, p, backend)
    d_out, d_hn = make_upstream(*out.shape, dtype=dtype, seed=3)
    plain = backward_fn(kind)(d_out, d_hn, cache)

    rng = np.random.default_rng(4)
    start = [rng.standard_normal(p["w_ih"].shape).astype(dtype), rng.standard_normal(p["w_hh"].shape).astype(dtype)]
    start += [rng.standard_normal(p["w_hh"].shape[0]).astype(dtype) if bias else None for _ in range(2)]
    into = tuple(None if a is None else a.copy() for a in start)
    res = backward_fn(kind)(d_out, d_hn, cache, grads=into)

    assert_close(res[0], plain[0], dtype, "dx")
    assert_close(res[1], plain[1], dtype, "dh0")
    for k, name in enumerate(NAMES):
        if not bias and k >= 2:
            assert res[2 + k] is None
            continue
        assert res[2 + k] is into[k], f"{name}: not the array given"
        assert_close(into[k], start[k] + plain[2 + k], dtype, name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_bias_entry_may_be_none(backend):
    p = make_problem("gru", 4, 2, 3, 5, seed=5)
    out, _, cache = forward_fn("gru")(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], backend=backend)
    d_out, d_hn = make_upstream(*out.shape, seed=6)
    plain = backward_fn("gru")(d_out, d_hn, cache)
    into = (np.zeros_like(p["w_ih"]), np.zeros_like(p["w_hh"]), None, None)
    res = backward_fn("gru")(d_out, d_hn, cache, grads=into)
    assert res[2] is into[0] and res[3] is into[1]
    for k in range(4):
        assert_close(res[2 + k], plain[2 + k], np.float64, NAMES[k])


def _bad_cases(p):
    w_ih, w_hh, b = p["w_ih"], p["w_hh"], p["b_ih"]
    ok = lambda: [np.zeros_like(w_ih), np.zeros_like(w_hh), np.zeros_like(b), np.zeros_like(b)]
    cases = {}
    cases["not-a-tuple"] = (TypeError, np.zeros_like(w_ih))
    cases["three"] = (TypeError, tuple(ok()[:3]))
    g = ok(); g[0] = g[0].astype(np.float32); cases["dtype"] = (TypeError, tuple(g))
    g = ok(); g[1] = list(g[1]); cases["list-entry"] = (TypeError, tuple(g))
    g = ok(); g[1] = g[1][:, :-1].copy(); cases["shape"] = (ValueError, tuple(g))
    g = ok(); g[0] = np.asfortranarray(g[0]); cases["fortran"] = (ValueError, tuple(g))
    g = ok(); g[2].setflags(write=False); cases["read-only"] = (ValueError, tuple(g))
    g = ok(); g[0] = w_ih; cases["is-w_ih"] = (ValueError, tuple(g))
    g = ok(); g[3] = g[2]; cases["two-alike"] = (ValueError, tuple(g))
    g = ok(); g[0] = None; cases["weight-none"] = (TypeError, tuple(g))
    return cases


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", list(_bad_cases(make_problem("rnn", 3, 2, 4, 5))))
def test_bad_grads_are_refused_and_left_untouched(backend, case):
    p = make_problem("rnn", 3, 2, 4, 5, seed=7)
    exc, grads = _bad_cases(p)[case]
    before = [None if not isinstance(a, np.ndarray) else a.copy() for a in (grads if isinstance(grads, tuple) else ())]
    _, _, cache = forward_fn("rnn")(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"], backend=backend)
    w_ih_before = p["w_ih"].copy()
    d_out, d_hn = make_upstream(3, 2, 5, seed=8)
    with pytest.raises(exc):
        backward_fn("rnn")(d_out, d_hn, cache, grads=grads)
    for a, b in zip(grads if isinstance(grads, tuple) else (), before):
        if b is not None:
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(p["w_ih"], w_ih_before)


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_cells_accumulate_over_steps_through_grads(kind):
    """A cell backpropagated over 3 steps holds the sum of the three steps' gradients, as a layer
    over the same sequence does (the cell passes its grads to the kernel)."""
    cls = {"rnn": fastrnn.RNNCell, "gru": fastrnn.GRUCell}[kind]
    layer_cls = {"rnn": fastrnn.RNN, "gru": fastrnn.GRU}[kind]
    cell = cls(4, 6, dtype=np.float64, seed=3)
    layer = layer_cls(4, 6, dtype=np.float64, seed=3)
    x = np.random.default_rng(9).standard_normal((3, 2, 4))
    d = np.random.default_rng(10).standard_normal((3, 2, 6))
    h, hs = None, []
    for t in range(3):
        h = cell(x[t], h)
        hs.append(h)
    dh = np.zeros((2, 6))
    for t in reversed(range(3)):
        _, dh = cell.backward(d[t] + dh)
    out, _ = layer(x)
    layer.backward(d)
    for name, g in cell.grads.items():
        assert_close(g, layer.grads[name + "_l0"], np.float64, name)
