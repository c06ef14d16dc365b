"""The plain-NumPy reference backend ("numpy"): the executable specification of every kernel.

Written to be read, not to be fast: one function per operation (named as its compiled twin), one
Python loop over time, NumPy for the products, no fusion and no tricks. Every other backend is
tested against this file.

Shapes (SPEC §1): x (T, B, I) time-major, h0 (B, H), w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh
(G*H,), lengths (B,) integers in [0, T] or None; out (T, B, H), h_n (B, H). G = 1 for the RNN and
3 for the GRU, whose rows are stacked r, z, n (reset, update, new) as in PyTorch.

Masking (`lengths`): sequence b is "active" at time index t when t < lengths[b]. An inactive step
produces out = 0, leaves the state unchanged and gets no gradient. Only the active rows of a step
are computed at all, so padded inputs never reach any result. With `reverse=True` the time loop runs
t = T-1 ... 0; a sequence is inactive for its padded indices t >= len_b, which come first, so it
starts from h0 at t = len_b - 1: each sequence is reversed within its own length, exactly as
PyTorch's packed sequences in the reverse half of a bidirectional layer.

Backpropagation through time walks the same steps in the opposite order. The running gradient `dh`
of the loss with respect to the state is d_hn at the end; at each active step it receives d_out[t],
goes through the cell, and what comes out is the gradient with respect to the previous state.
Inactive steps pass `dh` through untouched (the state was copied) and ignore d_out[t].

Everything is computed in the dtype of the inputs (float32 stays float32). The functional API
validates the arguments; called directly, `h0`, `b_ih`/`b_hh` and `d_hn` may also be None (zeros).
Inputs are never modified; the cache (a plain dict) keeps references to them and the per-step values
the backward pass needs.
"""
import numpy as np

from ._activations import ACTIVATIONS, sigmoid  # noqa: F401  (reference.sigmoid: the one sigmoid)
from ._validation import NONLINEARITIES, option

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward"]


# --------------------------------------------------------------------------------------------------
# Helpers shared by both kernels
# --------------------------------------------------------------------------------------------------

def _defaults(x, h0, w_hh, b_ih, b_hh):
    """Zeros for the optional arguments a direct caller may leave as None."""
    T, B, _ = x.shape
    GH, H = w_hh.shape
    if h0 is None:
        h0 = np.zeros((B, H), x.dtype)
    if b_ih is None:
        b_ih = np.zeros(GH, x.dtype)
    if b_hh is None:
        b_hh = np.zeros(GH, x.dtype)
    return h0, b_ih, b_hh


def time_steps(T, reverse, B=1):
    """The time indices in the order the forward pass visits them (none for an empty batch: with
    B = 0 no step has anything to compute, however large T is)."""
    if B == 0:
        return range(0)
    return range(T - 1, -1, -1) if reverse else range(T)


def active_mask(lengths, T, B):
    """active[t, b] = t < lengths[b] (all True without lengths): which rows a step computes."""
    if lengths is None:
        return np.ones((T, B), dtype=bool)
    lengths = np.asarray(lengths, dtype=np.int64)
    return np.arange(T)[:, None] < lengths[None, :]


# --------------------------------------------------------------------------------------------------
# Vanilla RNN
# --------------------------------------------------------------------------------------------------

def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False, lengths=None,
                need_cache=True):
    """Vanilla RNN, one layer and one direction.

        a_t = w_ih x_t + b_ih + w_hh h_{t-1} + b_hh          (pre-activation, (B, H))
        h_t = g(a_t),   g = tanh or relu

    Returns out (T, B, H) with out[t] = h_t on active rows and 0 elsewhere, h_n (B, H) the state
    after each sequence's last active step, and the cache for `rnn_backward` (None when need_cache
    is False: inference).
    """
    nonlinearity = option("nonlinearity", nonlinearity, NONLINEARITIES)
    h0, b_ih, b_hh = _defaults(x, h0, w_hh, b_ih, b_hh)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    active = active_mask(lengths, T, B)

    out = np.zeros((T, B, H), x.dtype)
    h_prev = np.zeros((T, B, H), x.dtype)   # the state each step starts from
    pre = np.zeros((T, B, H), x.dtype)      # a_t
    act = np.zeros((T, B, H), x.dtype)      # g(a_t), kept apart from `out`, which the caller owns
    h = h0.copy()
    for t in time_steps(T, reverse, B):
        rows = active[t]
        h_prev[t] = h
        a = x[t, rows] @ w_ih.T + b_ih + h[rows] @ w_hh.T + b_hh
        h_new = ACTIVATIONS[nonlinearity].forward(a)
        pre[t, rows] = a
        act[t, rows] = h_new
        out[t, rows] = h_new
        h[rows] = h_new

    cache = {"x": x, "h0": h0, "w_ih": w_ih, "w_hh": w_hh, "nonlinearity": nonlinearity,
             "reverse": reverse, "active": active, "h_prev": h_prev, "pre": pre, "act": act}
    return out, h, cache if need_cache else None


def _accumulate(grads, computed):
    """The backward's weight and bias gradients, or, given `grads` (arrays to accumulate into, a bias
    one possibly None), those arrays with the gradients added (the fast kernels add in place too)."""
    if grads is None:
        return tuple(computed)
    out = []
    for into, g in zip(grads, computed):
        if into is None:
            out.append(g)
        else:
            into += g
            out.append(into)
    return tuple(out)


def rnn_backward(d_out, d_hn, cache, grads=None):
    """Gradients of rnn_forward (backpropagation through time).

    At an active step, with dh the gradient of the loss with respect to h_t (from later steps, plus
    d_out[t]):
        da_t      = dh ⊙ g'(a_t)        tanh: 1 − h_t²;  relu: 0 where h_t <= 0, else 1 (NaN: 1, as torch)
        dx_t      = da_t w_ih                dh_{t-1} = da_t w_hh
        dw_ih    += da_tᵀ x_t                dw_hh   += da_tᵀ h_{t-1}
        db_ih    += Σ_b da_t                 db_hh   += Σ_b da_t

    Returns dx (T, B, I), dh0 (B, H), dw_ih, dw_hh, db_ih, db_hh.
    """
    x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]
    active, h_prev, act = cache["active"], cache["h_prev"], cache["act"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    if d_out is None:
        d_out = np.zeros((T, B, H), x.dtype)
    dh = np.zeros((B, H), x.dtype) if d_hn is None else np.array(d_hn, dtype=x.dtype)

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(H, x.dtype), np.zeros(H, x.dtype)
    for t in reversed(time_steps(T, cache["reverse"], B)):
        rows = active[t]
        g = dh[rows] + d_out[t, rows]
        da = ACTIVATIONS[cache["nonlinearity"]].backward(g, act[t, rows])   # relu': NaN passes, as torch
        dx[t, rows] = da @ w_ih
        dw_ih += da.T @ x[t, rows]
        dw_hh += da.T @ h_prev[t, rows]
        db_ih += da.sum(axis=0)
        db_hh += da.sum(axis=0)
        dh[rows] = da @ w_hh
    return (dx, dh) + _accumulate(grads, (dw_ih, dw_hh, db_ih, db_hh))


# --------------------------------------------------------------------------------------------------
# GRU
# --------------------------------------------------------------------------------------------------

def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=True, reverse=False, lengths=None,
                need_cache=True):
    """GRU, one layer and one direction; rows of the weights stacked r, z, n (PyTorch order).

        r_t = σ(W_ir x_t + b_ir + W_hr h_{t-1} + b_hr)
        z_t = σ(W_iz x_t + b_iz + W_hz h_{t-1} + b_hz)
        reset_after=True  (PyTorch):  n_t = tanh(W_in x_t + b_in + r_t ⊙ (W_hn h_{t-1} + b_hn))
        reset_after=False (Cho 2014): n_t = tanh(W_in x_t + b_in + W_hn (r_t ⊙ h_{t-1}) + b_hn)
        h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_{t-1}

    Returns out (T, B, H), h_n (B, H) and the cache for `gru_backward` (None when need_cache is False;
    see rnn_forward for masking).
    """
    h0, b_ih, b_hh = _defaults(x, h0, w_hh, b_ih, b_hh)
    T, B, _ = x.shape
    H = w_hh.shape[1]
    active = active_mask(lengths, T, B)
    W_ir, W_iz, W_in = w_ih[:H], w_ih[H:2 * H], w_ih[2 * H:]
    W_hr, W_hz, W_hn = w_hh[:H], w_hh[H:2 * H], w_hh[2 * H:]
    b_ir, b_iz, b_in = b_ih[:H], b_ih[H:2 * H], b_ih[2 * H:]
    b_hr, b_hz, b_hn = b_hh[:H], b_hh[H:2 * H], b_hh[2 * H:]

    out = np.zeros((T, B, H), x.dtype)
    h_prev = np.zeros((T, B, H), x.dtype)
    r_all = np.zeros((T, B, H), x.dtype)
    z_all = np.zeros((T, B, H), x.dtype)
    n_all = np.zeros((T, B, H), x.dtype)
    hn_all = np.zeros((T, B, H), x.dtype)   # reset_after=True: W_hn h_{t-1} + b_hn
    h = h0.copy()
    for t in time_steps(T, reverse, B):
        rows = active[t]
        xt, hp = x[t, rows], h[rows]
        h_prev[t] = h
        r = sigmoid(xt @ W_ir.T + b_ir + hp @ W_hr.T + b_hr)
        z = sigmoid(xt @ W_iz.T + b_iz + hp @ W_hz.T + b_hz)
        if reset_after:
            hn = hp @ W_hn.T + b_hn
            n = np.tanh(xt @ W_in.T + b_in + r * hn)
            hn_all[t, rows] = hn
        else:
            n = np.tanh(xt @ W_in.T + b_in + (r * hp) @ W_hn.T + b_hn)
        h_new = (1 - z) * n + z * hp
        r_all[t, rows], z_all[t, rows], n_all[t, rows] = r, z, n
        out[t, rows] = h_new
        h[rows] = h_new

    cache = {"x": x, "h0": h0, "w_ih": w_ih, "w_hh": w_hh, "reset_after": reset_after,
             "reverse": reverse, "active": active, "h_prev": h_prev,
             "r": r_all, "z": z_all, "n": n_all, "hn": hn_all}
    return out, h, cache if need_cache else None


def gru_backward(d_out, d_hn, cache, grads=None):
    """Gradients of gru_forward (backpropagation through time).

    At an active step, with dh the gradient with respect to h_t (later steps plus d_out[t]) and
    h = h_{t-1}; the "pre" quantities are the arguments of σ and tanh:
        dn = dh ⊙ (1 − z)                  dn_pre = dn ⊙ (1 − n²)
        dz = dh ⊙ (h − n)                  dz_pre = dz ⊙ z ⊙ (1 − z)
        reset_after=True,  hn = W_hn h + b_hn:
            dr = dn_pre ⊙ hn               d(hn) = dn_pre ⊙ r
        reset_after=False, s = r ⊙ h:
            ds = dn_pre W_hn               dr = ds ⊙ h          d(W_hn s + b_hn) = dn_pre
        dr_pre = dr ⊙ r ⊙ (1 − r)
        input side  d_gi = [dr_pre, dz_pre, dn_pre]:  dx_t = d_gi w_ih, dw_ih += d_giᵀ x_t, db_ih += Σ_b d_gi
        hidden side d_gh = [dr_pre, dz_pre, d(hn) or dn_pre] against [h, h, h or s]:
            dw_hh += d_ghᵀ [h, h, h or s],  db_hh += Σ_b d_gh
        dh_{t-1} = dh ⊙ z + [dr_pre, dz_pre] [W_hr; W_hz] + (d(hn) W_hn  or  ds ⊙ r)

    Returns dx (T, B, I), dh0 (B, H), dw_ih, dw_hh, db_ih, db_hh.
    """
    x, w_ih, w_hh = cache["x"], cache["w_ih"], cache["w_hh"]
    active, h_prev = cache["active"], cache["h_prev"]
    r_all, z_all, n_all, hn_all = cache["r"], cache["z"], cache["n"], cache["hn"]
    reset_after = cache["reset_after"]
    T, B, _ = x.shape
    H = w_hh.shape[1]
    W_hn = w_hh[2 * H:]
    if d_out is None:
        d_out = np.zeros((T, B, H), x.dtype)
    dh = np.zeros((B, H), x.dtype) if d_hn is None else np.array(d_hn, dtype=x.dtype)

    dx = np.zeros_like(x)
    dw_ih, dw_hh = np.zeros_like(w_ih), np.zeros_like(w_hh)
    db_ih, db_hh = np.zeros(3 * H, x.dtype), np.zeros(3 * H, x.dtype)
    for t in reversed(time_steps(T, cache["reverse"], B)):
        rows = active[t]
        g = dh[rows] + d_out[t, rows]
        hp = h_prev[t, rows]
        r, z, n = r_all[t, rows], z_all[t, rows], n_all[t, rows]

        dn_pre = g * (1 - z) * (1 - n ** 2)
        dz_pre = g * (hp - n) * z * (1 - z)
        if reset_after:
            dr = dn_pre * hn_all[t, rows]
            d_hn_pre = dn_pre * r              # gradient of W_hn h + b_hn
            n_side_input = hp                  # what W_hn multiplies
        else:
            ds = dn_pre @ W_hn
            dr = ds * hp
            d_hn_pre = dn_pre                  # gradient of W_hn (r ⊙ h) + b_hn
            n_side_input = r * hp
        dr_pre = dr * r * (1 - r)

        d_gi = np.concatenate([dr_pre, dz_pre, dn_pre], axis=1)      # (b, 3H)
        dx[t, rows] = d_gi @ w_ih
        dw_ih += d_gi.T @ x[t, rows]
        db_ih += d_gi.sum(axis=0)

        d_rz = np.concatenate([dr_pre, dz_pre], axis=1)              # (b, 2H)
        dw_hh[:2 * H] += d_rz.T @ hp
        dw_hh[2 * H:] += d_hn_pre.T @ n_side_input
        db_hh += np.concatenate([dr_pre, dz_pre, d_hn_pre], axis=1).sum(axis=0)

        dh_rows = g * z + d_rz @ w_hh[:2 * H]
        if reset_after:
            dh_rows += d_hn_pre @ W_hn
        else:
            dh_rows += ds * r
        dh[rows] = dh_rows
    return (dx, dh) + _accumulate(grads, (dw_ih, dw_hh, db_ih, db_hh))
