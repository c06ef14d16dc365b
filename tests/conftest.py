"""Shared helpers for fastrnn's tests.

Plain names (importable as `from conftest import ...`, since tests/ has no __init__.py):

    TOL, tolerance(dtype)      SPEC §5 relative tolerances: float64 1e-10, float32 1e-4
    rel_err(a, b)              ||a - b|| / ||b||  (||a - b|| when ||b|| == 0)
    assert_close(a, b, dtype, name)   shape, dtype and rel_err(a, b) <= tolerance(dtype)
    KERNELS                    the four kernel configurations as (kind, options), with KERNEL_IDS
    BACKENDS, COMPILED         fastrnn.backends(), and those other than the "numpy" reference
    make_problem(...)          random weights U(-1/sqrt(H), 1/sqrt(H)) and inputs, as a dict
    make_upstream(...)         random d_out (T, B, H) and d_hn (B, H)
    run(kind, opts, p, ...)    forward + backward through fastrnn.functional; dict of the 8 results
    RESULT_NAMES               ("out", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")

`restore_threads` (a fixture) puts the thread count back after a test.
Fixtures with the same names hand out the same functions (`make_problem`, `assert_close`,
`rel_err`, `tolerance`, `make_upstream`, `run_kernel`) for tests that prefer fixtures.
"""
import numpy as np
import pytest

import fastrnn
from fastrnn import functional as F

TOL = {np.dtype(np.float64): 1e-10, np.dtype(np.float32): 1e-4}

KERNELS = [
    ("rnn", {"nonlinearity": "tanh"}),
    ("rnn", {"nonlinearity": "relu"}),
    ("gru", {"reset_after": True}),
    ("gru", {"reset_after": False}),
]
KERNEL_IDS = ["rnn-tanh", "rnn-relu", "gru-reset_after", "gru-reset_before"]

BACKENDS = fastrnn.backends()
COMPILED = [b for b in BACKENDS if b != "numpy"]

RESULT_NAMES = ("out", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh")


def tolerance(dtype):
    """Relative tolerance of SPEC §5 for `dtype` (float32 or float64)."""
    return TOL[np.dtype(dtype)]


def rel_err(a, b):
    """||a − b|| / ||b|| (Frobenius norms, computed in float64); the absolute ||a − b|| if ||b|| = 0."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    diff = np.linalg.norm((a - b).ravel())
    ref = np.linalg.norm(b.ravel())
    return diff / ref if ref > 0 else diff


def assert_close(actual, expected, dtype, name="", tol=None):
    """Assert same shape, same dtype and rel_err(actual, expected) <= tol (default tolerance(dtype)).

    `None` matches only `None` (the bias gradients of a layer without bias)."""
    if expected is None or actual is None:
        assert actual is None and expected is None, f"{name}: {actual!r} vs {expected!r}"
        return
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    assert actual.dtype == np.dtype(dtype), f"{name}: dtype {actual.dtype} != {np.dtype(dtype)}"
    tol = tolerance(dtype) if tol is None else tol
    err = rel_err(actual, expected)
    assert err <= tol, f"{name}: relative error {err:.3e} > {tol:.0e}"


def gates(kind):
    """G: 1 for the RNN, 3 for the GRU."""
    return {"rnn": 1, "gru": 3}[kind]


def make_problem(kind, T, B, I, H, dtype=np.float64, seed=0, h0=True, bias=True):
    """Random inputs of one layer: dict x, h0, w_ih, w_hh, b_ih, b_hh (h0 / biases None when off).

    Parameters ~ U(-1/sqrt(H), 1/sqrt(H)) (PyTorch's init), x and h0 ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    G = gates(kind)
    k = 1.0 / np.sqrt(H) if H else 1.0

    def u(*shape):
        return rng.uniform(-k, k, shape).astype(dtype)

    return {
        "x": rng.standard_normal((T, B, I)).astype(dtype),
        "h0": rng.standard_normal((B, H)).astype(dtype) if h0 else None,
        "w_ih": u(G * H, I),
        "w_hh": u(G * H, H),
        "b_ih": u(G * H) if bias else None,
        "b_hh": u(G * H) if bias else None,
    }


def make_upstream(T, B, H, dtype=np.float64, seed=1):
    """Random upstream gradients d_out (T, B, H) and d_hn (B, H)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((T, B, H)).astype(dtype), rng.standard_normal((B, H)).astype(dtype)


def forward_fn(kind):
    return {"rnn": F.rnn_forward, "gru": F.gru_forward}[kind]


def backward_fn(kind):
    return {"rnn": F.rnn_backward, "gru": F.gru_backward}[kind]


def run(kind, opts, p, backend=None, reverse=False, lengths=None, d_out=None, d_hn=None, seed=1):
    """Forward and backward of one kernel through fastrnn.functional.

    `p` is a make_problem dict; `opts` the kernel options (nonlinearity / reset_after). Random
    upstream gradients (from `seed`) are used unless d_out / d_hn are given. Returns a dict with the
    RESULT_NAMES plus "cache"."""
    out, h_n, cache = forward_fn(kind)(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                       reverse=reverse, lengths=lengths, backend=backend, **opts)
    if d_out is None or d_hn is None:
        T, B, H = out.shape
        r_out, r_hn = make_upstream(T, B, H, out.dtype, seed)
        d_out = r_out if d_out is None else d_out
        d_hn = r_hn if d_hn is None else d_hn
    grads = backward_fn(kind)(d_out, d_hn, cache)
    res = dict(zip(RESULT_NAMES, (out, h_n) + tuple(grads)))
    res["cache"] = cache
    return res


def relu_margin(kind, opts, p, reverse=False, lengths=None):
    """Smallest |pre-activation| over the active steps of a relu RNN (inf for other kernels).

    A value near 0 means a kink of relu: two correct implementations may then disagree on its
    derivative, so tests pick seeds that keep away from it."""
    if kind != "rnn" or opts.get("nonlinearity") != "relu":
        return np.inf
    _, _, cache = F.rnn_forward(p["x"], p["h0"], p["w_ih"], p["w_hh"], p["b_ih"], p["b_hh"],
                                nonlinearity="relu", reverse=reverse, lengths=lengths,
                                backend="numpy")
    pre = np.abs(cache.data["pre"][cache.data["active"]])
    return pre.min() if pre.size else np.inf


# ---- fixtures handing out the helpers above ------------------------------------------------------

@pytest.fixture(name="tolerance")
def _tolerance_fixture():
    return tolerance


@pytest.fixture(name="rel_err")
def _rel_err_fixture():
    return rel_err


@pytest.fixture(name="assert_close")
def _assert_close_fixture():
    return assert_close


@pytest.fixture(name="make_problem")
def _make_problem_fixture():
    return make_problem


@pytest.fixture(name="make_upstream")
def _make_upstream_fixture():
    return make_upstream


@pytest.fixture(name="run_kernel")
def _run_kernel_fixture():
    return run


@pytest.fixture
def restore_threads():
    """Put the thread count back as it was after the test."""
    before = fastrnn.get_num_threads()
    yield
    fastrnn.set_num_threads(before)
