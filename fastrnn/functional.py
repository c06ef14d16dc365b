"""Functional kernels: one layer, one direction. Validates inputs (SPEC §3) and dispatches to a backend.

    out, h_n, cache = rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, nonlinearity="tanh",
                                  reverse=False, lengths=None, backend=None)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = rnn_backward(d_out, d_hn, cache, *, grads=None)
    out, h_n, cache = gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, *, reset_after=True,
                                  reverse=False, lengths=None, backend=None)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = gru_backward(d_out, d_hn, cache, *, grads=None)

With `grads=(dw_ih, dw_hh, db_ih, db_hh)` (arrays of the weights' shapes and dtype, C-contiguous,
writable, sharing no memory with the inputs; a bias entry may be None) the backward ADDS the weight
and bias gradients into those arrays and returns them, instead of returning new arrays: what a
training loop that accumulates gradients wants, without allocating, zeroing and adding them again.

Under `fastrnn.no_grad()` the forwards keep nothing for a backward and return `cache=None`.

A cache owns what its backward needs (SPEC §3): the sizes, a private copy of `lengths` (taken before
it is validated, so another thread changing the caller's array cannot change what the kernel reads),
its own views of the inputs, and fingerprints of those the backward reads again (x, w_ih, w_hh): a
backward after one of them was changed in place raises RuntimeError, as torch does.

Shapes: x (T, B, I), h0 (B, H) or None, w_ih (G*H, I), w_hh (G*H, H), b_ih and b_hh (G*H,) or None
(no bias: their gradients come back as None), lengths (B,) integers in [0, T] or None.
out (T, B, H), h_n (B, H). G = 1 for the RNN, 3 for the GRU (rows r, z, n).
"""
from collections import namedtuple

import numpy as np

from . import _backends
from ._config import is_grad_enabled
from ._guard import Snapshot
from ._validation import NONLINEARITIES, check_shape, float_array, lengths as checked_lengths, option

__all__ = ["rnn_forward", "rnn_backward", "gru_forward", "gru_backward"]

class Cache:
    """What a forward pass keeps for its backward: the backend that made it and that backend's data."""

    __slots__ = ("backend", "kind", "data", "shape", "dtype", "has_bias", "operands", "snapshot")

    def __init__(self, backend, kind, data, shape, dtype, has_bias, operands):
        self.backend, self.kind, self.data = backend, kind, data
        self.shape, self.dtype, self.has_bias = shape, dtype, has_bias
        self.operands = operands        # name -> array, every input as the kernels read it
        # what the backward reads again: refused if changed in place since (Snapshot.check)
        self.snapshot = Snapshot([(k, operands[k]) for k in ("x", "w_ih", "w_hh")])

    def __repr__(self):
        T, B, I, H = self.shape
        return f"<fastrnn {self.kind} cache: backend={self.backend!r} T={T} B={B} I={I} H={H} {self.dtype}>"


def _prepare(G, x, h0, w_ih, w_hh, b_ih, b_hh, lengths):
    """Validate one layer's inputs; returns contiguous arrays of one dtype and the sizes."""
    w_hh = float_array("w_hh", w_hh)
    dtype = w_hh.dtype
    if w_hh.ndim != 2:
        raise ValueError(f"w_hh: expected 2 dimensions (G*H, H), got shape {w_hh.shape}")
    H = w_hh.shape[1]
    check_shape("w_hh", w_hh, (G * H, H))
    x = float_array("x", x, dtype)
    if x.ndim != 3:
        raise ValueError(f"x: expected 3 dimensions (T, B, I), got shape {x.shape}")
    T, B, I = x.shape
    w_ih = float_array("w_ih", w_ih, dtype)
    check_shape("w_ih", w_ih, (G * H, I))
    if (b_ih is None) != (b_hh is None):
        raise ValueError("b_ih, b_hh: give both biases or neither")
    has_bias = b_ih is not None
    if has_bias:
        b_ih = float_array("b_ih", b_ih, dtype)
        check_shape("b_ih", b_ih, (G * H,))
        b_hh = float_array("b_hh", b_hh, dtype)
        check_shape("b_hh", b_hh, (G * H,))
    else:
        b_ih = b_hh = np.zeros(G * H, dtype)
    if h0 is None:
        h0 = np.zeros((B, H), dtype)
    else:
        h0 = float_array("h0", h0, dtype)
        check_shape("h0", h0, (B, H))
    lengths = checked_lengths(lengths, T, B)

    def own(a):                 # contiguous, and a view of our own: the caller's `a.shape = ...` can't reach it
        return np.ascontiguousarray(a).view()
    return (own(x), own(h0), own(w_ih), own(w_hh), own(b_ih), own(b_hh), lengths), (T, B, I, H), dtype, has_bias


def _backward_inputs(d_out, d_hn, cache):
    if cache is None:
        raise TypeError("cache: None; the forward ran under fastrnn.no_grad() and kept nothing for a "
                        "backward (run it outside no_grad to backpropagate)")
    if not isinstance(cache, Cache):
        raise TypeError(f"cache: expected the cache returned by a forward call, got {type(cache).__name__}")
    T, B, I, H = cache.shape
    d_out = float_array("d_out", d_out, cache.dtype)
    check_shape("d_out", d_out, (T, B, H))
    if d_hn is None:
        d_hn = np.zeros((B, H), cache.dtype)
    else:
        d_hn = float_array("d_hn", d_hn, cache.dtype)
        check_shape("d_hn", d_hn, (B, H))
    return np.ascontiguousarray(d_out), np.ascontiguousarray(d_hn)


_GRAD_NAMES = ("dw_ih", "dw_hh", "db_ih", "db_hh")


def _grads_into(grads, cache, d_out, d_hn):
    """Validate `grads=` of a backward: None, or 4 arrays to accumulate into (see the module doc)."""
    if grads is None:
        return None
    if not isinstance(grads, (tuple, list)) or len(grads) != 4:
        raise TypeError("grads: expected None or a tuple (dw_ih, dw_hh, db_ih, db_hh) of arrays to add into")
    T, B, I, H = cache.shape
    GH = (3 if cache.kind == "gru" else 1) * H
    shapes = ((GH, I), (GH, H), (GH,), (GH,))
    for k, (name, g, shape) in enumerate(zip(_GRAD_NAMES, grads, shapes)):
        if g is None and k >= 2:
            continue
        if type(g) is not np.ndarray or g.dtype != cache.dtype:
            raise TypeError(f"grads: {name} must be a NumPy array of dtype {cache.dtype}, got "
                            f"{getattr(g, 'dtype', type(g).__name__)}")
        if g.shape != shape:
            raise ValueError(f"grads: {name} must have shape {shape}, got {g.shape}")
        if not (g.flags.c_contiguous and g.flags.writeable):
            raise ValueError(f"grads: {name} must be C-contiguous and writable")
    named = [(n, g) for n, g in zip(_GRAD_NAMES, grads) if g is not None]
    others = [("d_out", d_out), ("d_hn", d_hn)] + list(cache.operands.items())
    for i, (name, g) in enumerate(named):
        for other, a in named[i + 1:] + others:
            if np.may_share_memory(g, a):
                raise ValueError(f"grads: {name} shares memory with {other}")
    return tuple(grads)


def backward(kind, d_out, d_hn, cache, grads=None):
    """rnn_backward or gru_backward (`kind`), positional (the layers' and cells' way in)."""
    d_out, d_hn = _backward_inputs(d_out, d_hn, cache)
    if cache.kind != kind:
        raise ValueError(f"cache: expected a cache from {kind}_forward, got one from {cache.kind}_forward")
    grads = _grads_into(grads, cache, d_out, d_hn)
    cache.snapshot.check(f"{kind}_backward")
    _, impl = _backends.get(cache.backend)
    dx, dh0, dw_ih, dw_hh, db_ih, db_hh = getattr(impl, kind + "_backward")(d_out, d_hn, cache.data, grads)
    if not cache.has_bias:
        db_ih = db_hh = None
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


_OPERANDS = ("x", "h0", "w_ih", "w_hh", "b_ih", "b_hh")


def _cache(name, kind, data, shape, dtype, has_bias, args):
    operands = dict(zip(_OPERANDS, args[:6]))
    if not has_bias:                  # the zeros _prepare made: nobody else's memory
        del operands["b_ih"], operands["b_hh"]
    return Cache(name, kind, data, shape, dtype, has_bias, operands)


def rnn_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, nonlinearity="tanh", reverse=False,
                lengths=None, backend=None):
    """Vanilla RNN layer, one direction: h_t = g(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh)."""
    return forward("rnn", x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity, reverse, lengths, backend)


def rnn_backward(d_out, d_hn, cache, *, grads=None):
    """Gradients of rnn_forward: dx, dh0, dw_ih, dw_hh, db_ih, db_hh (biases None without bias);
    with grads=, the weight and bias gradients are added into those arrays (module doc)."""
    return backward("rnn", d_out, d_hn, cache, grads)


def gru_forward(x, h0, w_ih, w_hh, b_ih=None, b_hh=None, *, reset_after=True, reverse=False,
                lengths=None, backend=None):
    """GRU layer, one direction, PyTorch gate order (r, z, n); reset_after=False is Cho et al. 2014."""
    return forward("gru", x, h0, w_ih, w_hh, b_ih, b_hh, reset_after, reverse, lengths, backend)


def gru_backward(d_out, d_hn, cache, *, grads=None):
    """Gradients of gru_forward: dx, dh0, dw_ih, dw_hh, db_ih, db_hh (biases None without bias);
    with grads=, the weight and bias gradients are added into those arrays (module doc)."""
    return backward("gru", d_out, d_hn, cache, grads)


# The two cells, named in one place for these functions and for the layers and cells built on
# them: the gate count G and the one option of each (its keyword, default and values). A backend's
# functions are named after the kind (rnn_forward, gru_backward, ...).
Kind = namedtuple("Kind", "gates option default allowed")
KINDS = {
    "rnn": Kind(1, "nonlinearity", "tanh", NONLINEARITIES),
    "gru": Kind(3, "reset_after", True, (True, False)),
}


def forward(kind, x, h0, w_ih, w_hh, b_ih, b_hh, variant, reverse, lengths, backend):
    """rnn_forward or gru_forward (`kind`), every argument positional; `variant` is the kind's option
    (nonlinearity or reset_after). What the layers and cells call, without building keywords."""
    k = KINDS[kind]
    variant = option(k.option, variant, k.allowed)
    reverse = option("reverse", reverse, (True, False))
    name, impl = _backends.get(backend)
    args, shape, dtype, has_bias = _prepare(k.gates, x, h0, w_ih, w_hh, b_ih, b_hh, lengths)
    need_cache = is_grad_enabled()
    out, h_n, data = getattr(impl, kind + "_forward")(*args[:6], variant, reverse, args[6], need_cache=need_cache)
    return out, h_n, _cache(name, kind, data, shape, dtype, has_bias, args) if need_cache else None
