"""Where the "c" backend's arrays start in memory, and why it does not change a result.

The threads of a time loop write rows of the same arrays (states, gates, the pre-activation
gradients), each its own slice of hidden units; a slice's edge that is not on a 64-byte line is a
line both threads write at every row (README: "How it is fast"). So the backend allocates every
array it returns or writes 64-byte aligned, and the kernels add the bias gradients, which may be the
caller's arrays (`grads=`) at any address, into per-thread copies. These tests hold the backend to
the first and check that the second gives the same bits at every alignment and thread count."""
import numpy as np
import pytest

import fastrnn
from fastrnn import _config
from conftest import KERNEL_IDS, KERNELS, backward_fn, forward_fn, make_problem, make_upstream

pytestmark = pytest.mark.skipif("c" not in fastrnn.backends(), reason="compiled backend not built")

LINE = 64


def _offset_copy(a, shift):
    """A C-contiguous copy of `a` whose data start `shift` elements past a 64-byte boundary."""
    n, item = a.size, a.dtype.itemsize
    buf = np.empty(n + (LINE + shift * item) // item + 1, a.dtype)
    start = (-buf.ctypes.data % LINE) // item + shift
    view = buf[start:start + n].reshape(a.shape)
    view[...] = a
    assert view.ctypes.data % LINE == (shift * item) % LINE
    return view


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_arrays_of_the_c_backend_start_on_a_cache_line(kind, opts, dtype):
    """Every array of at least 4 KiB (smaller ones, here the bias gradients, are plain arrays: a call
    that small runs on one thread, and the kernels add the bias gradients into copies anyway)."""
    p = make_problem(kind, 6, 32, 40, 33, dtype=dtype, seed=1)
    out, h_n, cache = forward_fn(kind)(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                       backend="c", **opts)
    d_out, d_hn = make_upstream(*out.shape, dtype=dtype, seed=2)
    grads = backward_fn(kind)(d_out, d_hn, cache)
    arrays = {"out": out, "h_n": h_n, "states": cache.data["states"], **dict(zip(
        ("dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"), grads))}
    if kind == "gru":
        arrays["gates"] = cache.data["gates"]
    small = {k for k, a in arrays.items() if a.nbytes < 4096}
    assert small == {"db_ih", "db_hh"}, small
    misaligned = {k: a.ctypes.data % LINE for k, a in arrays.items() if k not in small and a.ctypes.data % LINE}
    assert not misaligned, f"not on a 64-byte line (offset in bytes): {misaligned}"


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("lengths", [None, [8, 3, 0, 8, 5, 1, 8, 7] * 4], ids=["full", "lengths"])
def test_bias_grads_into_arrays_at_any_address_give_the_same_bits(kind, opts, dtype, lengths, restore_threads):
    """grads= at every element offset from a line, with 1, 2 and 3 threads (sizes as in test_threads,
    large enough that the loop really splits its units; a slice then ends inside a line of the shifted
    arrays): bitwise what aligned arrays get."""
    T, B, I, H = 8, 32, 20, 256
    p = make_problem(kind, T, B, I, H, dtype=dtype, seed=3)
    lengths = None if lengths is None else np.array(lengths)
    rng = np.random.default_rng(4)
    start = [rng.standard_normal(p[w].shape).astype(dtype) for w in ("w_ih", "w_hh")]
    start += [rng.standard_normal(p["w_hh"].shape[0]).astype(dtype) for _ in range(2)]
    d_out, d_hn = make_upstream(T, B, H, dtype=dtype, seed=5)
    expected = None
    for threads in (1, 2, 3):
        _config._state["threads"] = threads      # as test_threads.use_threads: above the CPU count too
        _, _, cache = forward_fn(kind)(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                       backend="c", lengths=lengths, **opts)
        for shift in range(LINE // np.dtype(dtype).itemsize):
            into = tuple(_offset_copy(a, shift) for a in start)
            backward_fn(kind)(d_out, d_hn, cache, grads=into)
            got = [np.array(a) for a in into]
            if expected is None:
                expected = got
                plain = backward_fn(kind)(d_out, d_hn, cache)
                tol = 1e-12 if dtype == np.float64 else 1e-5
                for k in range(4):      # and it is start + the gradients
                    np.testing.assert_allclose(got[k], start[k] + plain[2 + k], rtol=tol, atol=tol)
                continue
            for name, a, b in zip(("dw_ih", "dw_hh", "db_ih", "db_hh"), got, expected):
                assert np.array_equal(a, b), f"{name}: threads {threads}, shift {shift}"
