"""The NumPy reference against central finite differences (SPEC §5: float64, relative error <= 1e-6
for every gradient), and its forward pass against a scalar loop written straight from SPEC §1.

Loss: L = sum(out * R1) + sum(h_n * R2) with random R1, R2, so that both the d_out and the d_hn
paths of the backward pass are exercised (R1 is nonzero at padded steps too: those must be ignored).
"""
import math

import numpy as np
import pytest

from conftest import KERNEL_IDS, KERNELS, make_problem, make_upstream, rel_err
from fastrnn import reference as R

FD_EPS = 1e-6
FD_TOL = 1e-6
T, B, I, H = 4, 3, 3, 3
LENGTHS = np.array([2, 0, 4], dtype=np.int64)  # unsorted, includes 0 and T


def ref_forward(kind, opts, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, lengths):
    if kind == "rnn":
        return R.rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, opts["nonlinearity"], reverse, lengths)
    return R.gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, opts["reset_after"], reverse, lengths)


def ref_backward(kind, d_out, d_hn, cache):
    return (R.rnn_backward if kind == "rnn" else R.gru_backward)(d_out, d_hn, cache)


def problem_away_from_relu_kinks(kind, opts, reverse, lengths, h0, bias):
    """A problem whose relu pre-activations all stay >= 1e-3 away from 0 (any seed for other kernels),
    so that the finite differences never step across a kink."""
    for seed in range(100):
        p = make_problem(kind, T, B, I, H, seed=seed, h0=h0, bias=bias)
        if kind == "rnn" and opts["nonlinearity"] == "relu":
            _, _, cache = ref_forward(kind, opts, *p.values(), reverse, lengths)
            pre = np.abs(cache["pre"][cache["active"]])
            if pre.size and pre.min() < 1e-3:
                continue
        return p, seed
    raise AssertionError("no seed keeps the relu pre-activations away from 0")


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("h0", [True, False], ids=["h0", "h0None"])
@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
def test_gradients_match_finite_differences(kind, opts, reverse, lengths, h0, bias):
    p, seed = problem_away_from_relu_kinks(kind, opts, reverse, lengths, h0, bias)
    R1, R2 = make_upstream(T, B, H, seed=seed + 1000)
    snapshot = {k: None if v is None else v.copy() for k, v in p.items()}

    # Analytic gradients, with None for h0 / biases when they are off (the direct-call defaults).
    _, _, cache = ref_forward(kind, opts, *p.values(), reverse, lengths)
    grads = dict(zip(["x", "h0", "w_ih", "w_hh", "b_ih", "b_hh"], ref_backward(kind, R1, R2, cache)))

    # Finite differences on explicit arrays (zeros stand for None: the gradient there is the same).
    G = 3 if kind == "gru" else 1
    zeros = {"h0": np.zeros((B, H)), "b_ih": np.zeros(G * H), "b_hh": np.zeros(G * H)}
    args = {k: (zeros[k] if v is None else v.copy()) for k, v in p.items()}

    def loss():
        out, h_n, _ = ref_forward(kind, opts, *args.values(), reverse, lengths)
        return np.sum(out * R1) + np.sum(h_n * R2)

    for name, a in args.items():
        fd = np.zeros_like(a)
        for i in np.ndindex(a.shape):
            keep = a[i]
            a[i] = keep + FD_EPS
            up = loss()
            a[i] = keep - FD_EPS
            down = loss()
            a[i] = keep
            fd[i] = (up - down) / (2 * FD_EPS)
        assert grads[name].shape == a.shape, name
        assert grads[name].dtype == np.float64, name
        err = rel_err(grads[name], fd)
        assert err <= FD_TOL, f"d{name}: relative error {err:.2e} against finite differences"

    # Padded steps get no gradient at all, and the inputs were not modified.
    if lengths is not None:
        padded = np.arange(T)[:, None] >= lengths[None, :]
        assert np.all(grads["x"][padded] == 0)
    for k, v in p.items():
        assert (v is None and snapshot[k] is None) or np.array_equal(v, snapshot[k]), k


# ---- forward against an explicit scalar loop --------------------------------------------------

def _sig(v):
    return 1.0 / (1.0 + math.exp(-v))


def scalar_loop(kind, opts, x, h0, w_ih, w_hh, b_ih, b_hh, reverse, lengths):
    """SPEC §1 written out element by element, one sequence at a time: no NumPy arithmetic."""
    T_, B_, I_ = x.shape
    H_ = w_hh.shape[1]
    out = [[[0.0] * H_ for _ in range(B_)] for _ in range(T_)]
    h_n = []
    for b in range(B_):
        n_steps = T_ if lengths is None else int(lengths[b])
        order = range(n_steps - 1, -1, -1) if reverse else range(n_steps)
        h = [float(h0[b, j]) for j in range(H_)]
        for t in order:
            def gi(row):   # input projection of gate row `row`
                return sum(w_ih[row, k] * x[t, b, k] for k in range(I_)) + b_ih[row]

            def gh(row, state):   # hidden projection of gate row `row` applied to `state`
                return sum(w_hh[row, k] * state[k] for k in range(H_)) + b_hh[row]

            if kind == "rnn":
                g = math.tanh if opts["nonlinearity"] == "tanh" else (lambda v: max(v, 0.0))
                new = [g(gi(j) + gh(j, h)) for j in range(H_)]
            else:
                r = [_sig(gi(j) + gh(j, h)) for j in range(H_)]
                z = [_sig(gi(H_ + j) + gh(H_ + j, h)) for j in range(H_)]
                if opts["reset_after"]:
                    n = [math.tanh(gi(2 * H_ + j) + r[j] * gh(2 * H_ + j, h)) for j in range(H_)]
                else:
                    rh = [r[k] * h[k] for k in range(H_)]
                    n = [math.tanh(gi(2 * H_ + j) + gh(2 * H_ + j, rh)) for j in range(H_)]
                new = [(1 - z[j]) * n[j] + z[j] * h[j] for j in range(H_)]
            h = new
            out[t][b] = list(h)
        h_n.append(h)
    return np.array(out).reshape(T_, B_, H_), np.array(h_n).reshape(B_, H_)


@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
@pytest.mark.parametrize("lengths", [None, np.array([3, 0, 5, 1])], ids=["full", "lengths"])
@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
def test_forward_matches_scalar_loop(kind, opts, reverse, lengths):
    p = make_problem(kind, 5, 4, 3, 4, seed=7)
    p["b_ih"] = p["b_ih"] * 4   # larger biases, so a swapped bias or gate row cannot hide
    out, h_n, _ = ref_forward(kind, opts, *p.values(), reverse, lengths)
    out_loop, h_n_loop = scalar_loop(kind, opts, *p.values(), reverse, lengths)
    assert rel_err(out, out_loop) < 1e-13
    assert rel_err(h_n, h_n_loop) < 1e-13
    if lengths is not None:
        assert np.all(out[np.arange(5)[:, None] >= lengths[None, :]] == 0)
        assert np.array_equal(h_n[1], p["h0"][1])    # length 0: the state is h0


# ---- direct-call conveniences and dtypes -------------------------------------------------------

@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
def test_none_arguments_mean_zeros(kind, opts):
    p = make_problem(kind, 3, 2, 3, 4, seed=3)
    G = 3 if kind == "gru" else 1
    z_h0, z_b = np.zeros((2, 4)), np.zeros(G * 4)
    d_out, _ = make_upstream(3, 2, 4)
    o1, h1, c1 = ref_forward(kind, opts, p["x"], None, p["w_ih"], p["w_hh"], None, None, False, None)
    o2, h2, c2 = ref_forward(kind, opts, p["x"], z_h0, p["w_ih"], p["w_hh"], z_b, z_b, False, None)
    assert np.array_equal(o1, o2) and np.array_equal(h1, h2)
    g1 = ref_backward(kind, d_out, None, c1)
    g2 = ref_backward(kind, d_out, np.zeros((2, 4)), c2)
    for a, b in zip(g1, g2):
        assert np.array_equal(a, b)


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
def test_float32_stays_float32(kind, opts):
    p = make_problem(kind, 3, 2, 3, 4, dtype=np.float32, seed=4)
    d_out, d_hn = make_upstream(3, 2, 4, dtype=np.float32)
    out, h_n, cache = ref_forward(kind, opts, *p.values(), True, np.array([3, 1]))
    grads = ref_backward(kind, d_out, d_hn, cache)
    assert isinstance(cache, dict)
    for a in (out, h_n) + tuple(grads):
        assert a.dtype == np.float32
    p64 = {k: v.astype(np.float64) for k, v in p.items()}
    out64, _, _ = ref_forward(kind, opts, *p64.values(), True, np.array([3, 1]))
    assert rel_err(out, out64) < 1e-5


@pytest.mark.parametrize("kind,opts", KERNELS, ids=KERNEL_IDS)
@pytest.mark.parametrize("T_,B_", [(0, 3), (3, 0), (0, 0)])
def test_empty(kind, opts, T_, B_):
    p = make_problem(kind, T_, B_, 2, 3, seed=5)
    out, h_n, cache = ref_forward(kind, opts, *p.values(), False, None)
    assert out.shape == (T_, B_, 3) and h_n.shape == (B_, 3)
    assert np.array_equal(h_n, p["h0"]) and h_n is not p["h0"]
    d_out, d_hn = make_upstream(T_, B_, 3)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = ref_backward(kind, d_out, d_hn, cache)
    assert dx.shape == p["x"].shape and dh0.shape == (B_, 3)
    assert dw_ih.shape == p["w_ih"].shape and dw_hh.shape == p["w_hh"].shape
    assert db_ih.shape == p["b_ih"].shape and db_hh.shape == p["b_hh"].shape
    assert np.array_equal(dh0, d_hn)
    assert not dw_ih.any() and not dw_hh.any() and not db_ih.any() and not db_hh.any()
