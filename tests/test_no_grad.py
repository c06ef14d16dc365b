"""Inference mode: fastrnn.no_grad() (as torch.no_grad).

Under no_grad a forward keeps nothing for a backward: the kernels keep two states instead of T + 1
and no gate values, the functional forwards return cache=None, layers refuse to backpropagate through
such a call, and cells record nothing on their tape. The outputs must not change: bitwise the same
as the training forward of the same backend.
"""
import threading
import tracemalloc

import numpy as np
import pytest

import fastrnn
from conftest import BACKENDS, KERNEL_IDS, KERNELS, assert_close, forward_fn, make_problem

LENGTHS = np.array([4, 0, 7, 1, 7])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
def test_forward_matches_training_forward(backend, kind, opts, dtype, reverse, lengths):
    p = make_problem(kind, 7, 5, 6, 19, dtype, seed=3)
    args = (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    kw = dict(opts, reverse=reverse, lengths=lengths, backend=backend)
    out, h_n, cache = forward_fn(kind)(*args, **kw)
    with fastrnn.no_grad():
        out2, h_n2, cache2 = forward_fn(kind)(*args, **kw)
    assert cache is not None and cache2 is None
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(h_n2, h_n)


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
def test_compiled_matches_reference(kind, opts):
    p = make_problem(kind, 9, 3, 5, 40, np.float64, seed=4)
    args = (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    with fastrnn.no_grad():
        ref = forward_fn(kind)(*args, backend="numpy", **opts)
        got = forward_fn(kind)(*args, **opts)
    assert_close(got[0], ref[0], np.float64, "out")
    assert_close(got[1], ref[1], np.float64, "h_n")


@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_backward_of_no_cache_is_refused(kind):
    p = make_problem(kind, 3, 2, 4, 5)
    with fastrnn.no_grad():
        out, h_n, cache = forward_fn(kind)(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    backward = getattr(fastrnn.functional, kind + "_backward")
    with pytest.raises(TypeError, match="no_grad"):
        backward(np.ones_like(out), None, cache)


def test_mode_nests_restores_and_is_per_thread():
    assert fastrnn.is_grad_enabled()
    with fastrnn.no_grad():
        assert not fastrnn.is_grad_enabled()
        with fastrnn.set_grad_enabled(True):
            assert fastrnn.is_grad_enabled()
            seen = []
            other = threading.Thread(target=lambda: seen.append(fastrnn.is_grad_enabled()))
            with fastrnn.no_grad():
                other.start()
                other.join()
            assert seen == [True]       # another thread keeps its own mode
        assert not fastrnn.is_grad_enabled()
    assert fastrnn.is_grad_enabled()

    @fastrnn.no_grad()
    def inside():
        return fastrnn.is_grad_enabled()

    assert inside() is False and inside() is False
    assert fastrnn.is_grad_enabled()

    fastrnn.set_grad_enabled(False)     # as a plain function, as in torch
    try:
        assert not fastrnn.is_grad_enabled()
    finally:
        fastrnn.set_grad_enabled(True)
    with pytest.raises(TypeError):
        fastrnn.set_grad_enabled("no")


def test_mode_restored_after_an_error():
    with pytest.raises(ValueError):
        with fastrnn.no_grad():
            raise ValueError("boom")
    assert fastrnn.is_grad_enabled()


@pytest.mark.parametrize("cls", [fastrnn.GRU, fastrnn.RNN])
def test_layer(cls):
    layer = cls(6, 11, num_layers=2, bidirectional=True, batch_first=True, seed=0)
    x = np.random.default_rng(0).standard_normal((4, 9, 6)).astype(np.float32)
    lengths = [9, 3, 0, 5]
    out, h_n = layer(x, lengths=lengths)
    with fastrnn.no_grad():
        out2, h_n2 = layer(x, lengths=lengths)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(h_n2, h_n)
    with pytest.raises(RuntimeError, match="no_grad"):
        layer.backward(np.ones_like(out))
    layer(x, lengths=lengths)           # a recorded forward makes backward possible again
    layer.backward(np.ones_like(out))


@pytest.mark.parametrize("cls", [fastrnn.GRUCell, fastrnn.RNNCell])
def test_cell_records_nothing(cls):
    cell = cls(5, 8, seed=1)
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    h = cell(x)
    assert cell.pending_steps == 1
    with fastrnn.no_grad():
        h_inf = cell(x)
        h2 = cell(x, h)
    assert cell.pending_steps == 1
    np.testing.assert_array_equal(h_inf, h)
    cell.backward(np.ones_like(h2))
    assert cell.pending_steps == 0
    with fastrnn.no_grad():
        cell(x)
    with pytest.raises(RuntimeError, match="no_grad"):
        cell.backward(np.ones_like(h2))


@pytest.mark.skipif("c" not in BACKENDS, reason="the compiled kernels are not built")
@pytest.mark.parametrize("kind", ["rnn", "gru"])
def test_inference_allocates_only_the_output(kind):
    """The point of no_grad: no (T + 1, B, H) states and no (T, B, 4H) gates are allocated."""
    T, B, I, H = 300, 4, 8, 32
    p = make_problem(kind, T, B, I, H, np.float32)
    args = (p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"])
    with fastrnn.no_grad():
        forward_fn(kind)(*args, backend="c")   # warm-up: the reused scratch (input projection)
        tracemalloc.start()
        try:
            out, _, _ = forward_fn(kind)(*args, backend="c")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    states = (T + 1) * B * H * 4
    assert peak < out.nbytes + states // 2, f"peak {peak} bytes, output {out.nbytes}"
