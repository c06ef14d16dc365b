"""One step of a cell (fastrnn.torch.GRUCell / RNNCell) on the C kernels, in eager mode.

    h_next = step(cell, x, h, w_ih, w_hh, b_ih, b_hh, need_cache)

`cell` is ("gru", reset_after) or ("rnn", nonlinearity); x (B, I) and h (B, H) or None are tensors the
cell has checked (CPU, the parameters' dtype, these shapes); h_next is (B, H). Under torch.compile, or
for tensors this way does not take as they are (not contiguous, parameters of another dtype or shape),
the step is the layer's operator with T = 1 (_ops.gru / _ops.rnn on x[None]), which converts or
refuses them with fastrnn.functional's messages.

Why a way of its own. A cell's step at B = 1, H = 256 runs kernels of about 6 µs forward and 14 µs
backward. Through the layer's operator (its input view, its two outputs, its generic checks and
conversions, its backward rebuilding a cache dict) a training step of torch.nn.RNNCell's usual
loop took 120 µs against torch's 93 (AMD EPYC Zen 5, 2026-12-02). Here one autograd.Function returns
only h_next, the C backend's forward and backward are called on NumPy views with nothing else
around them, and an unused output's gradient never exists: 91-105 µs in the same conditions
(benches/results-zen5.md).

What it keeps of the layer's way (_ops._eager): x, h and the parameters saved with
save_for_backward (an in-place change before the backward is torch's version error); the arrays the
backward needs (states, gates) saved as tensors too, so autograd frees them after the backward;
double backward refused with the same RuntimeError; the thread count of _ops._nthreads.
"""
import numpy as np
import torch

from . import _ops
from .._validation import NONLINEARITIES

__all__ = ["step"]

_GATES = {"gru": 3, "rnn": 1}
_KEPT = {"gru": ("states", "gates"), "rnn": ("states",)}


def _plain(G, x, h, w_ih, w_hh, b_ih, b_hh):
    """The NumPy dtype when every tensor is contiguous with w_ih's dtype (float32 / float64) and the
    parameters have the shapes of x's (B, I) and w_hh's (G·H, H), h (B, H) (both biases or neither);
    else None. (One expression: at a cell's step each check costs a tenth of a microsecond.)"""
    GH, H = w_hh.shape
    dt = w_ih.dtype
    if (GH == G * H and w_ih.shape == (GH, x.shape[1]) and w_hh.dtype is dt and x.is_contiguous() and
            w_ih.is_contiguous() and w_hh.is_contiguous() and
            (h is None or (h.shape == (x.shape[0], H) and h.is_contiguous())) and
            (b_ih is None and b_hh is None or
             b_ih is not None and b_hh is not None and b_ih.dtype is dt and b_hh.dtype is dt and
             b_ih.shape == (GH,) and b_hh.shape == (GH,) and b_ih.is_contiguous() and b_hh.is_contiguous())):
        return _ops._NUMPY_DTYPES.get(dt)
    return None


def _forward(cell, x, h, w_ih, w_hh, b_ih, b_hh, dt, need_cache):
    """The C forward of one step on NumPy views: h_next (B, H) as an array, and the cache."""
    kind, option = cell
    B, H = x.shape[0], w_hh.shape[1]
    GH = w_hh.shape[0]
    h0 = np.zeros((B, H), dt) if h is None else h.numpy(force=True)
    if b_ih is None:
        bi = bh = np.zeros(GH, dt)
    else:
        bi, bh = _ops.param_view(b_ih), _ops.param_view(b_hh)
    run = _ops._c().gru_forward if kind == "gru" else _ops._c().rnn_forward
    _, h_n, cache = run(x.numpy(force=True)[None], h0, _ops.param_view(w_ih), _ops.param_view(w_hh), bi, bh,
                        option, False, None, need_cache=need_cache, nthreads=_ops._nthreads())
    return h_n, cache


class _Step(torch.autograd.Function):
    """h_next = one step of `cell`, with its C backward."""

    @staticmethod
    def forward(ctx, x, h, w_ih, w_hh, b_ih, b_hh, cell, dt):
        h_n, cache = _forward(cell, x, h, w_ih, w_hh, b_ih, b_hh, dt, True)
        kept = _KEPT[cell[0]]
        ctx.save_for_backward(x, h, w_ih, w_hh, b_ih, b_hh, *(torch.from_numpy(cache.pop(k)) for k in kept))
        ctx.cache, ctx.kind = cache, cell[0]
        ctx.set_materialize_grads(False)        # a gradient that does not reach h_next stays None
        return torch.from_numpy(h_n)

    @staticmethod
    def backward(ctx, dh):
        saved = ctx.saved_tensors
        if dh is None:
            return (None,) * 8
        cache = dict(ctx.cache)         # (ctx's stays as it is for a second backward, retain_graph=True)
        cache.update(zip(_KEPT[ctx.kind], (t.numpy() for t in saved[6:])))
        dt = cache["x"].dtype
        d_out = np.zeros((1,) + dh.shape, dt)
        d_hn = np.ascontiguousarray(dh.numpy(force=True))      # (autograd gives h_next's dtype)
        run = _ops._c().gru_backward if ctx.kind == "gru" else _ops._c().rnn_backward
        dx, dh0, dw_ih, dw_hh, db_ih, db_hh = run(d_out, d_hn, cache, nthreads=_ops._nthreads())
        grads = _ops._input_grads(tuple(map(torch.from_numpy, (dx[0], dh0, dw_ih, dw_hh, db_ih, db_hh))),
                                  saved[1] is not None, saved[4] is not None)
        return (*_ops.refused_twice(ctx.kind + "_backward", saved[:6], grads), None, None)


_apply = _ops.apply_of(_Step)


def step(cell, x, h, w_ih, w_hh, b_ih, b_hh, need_cache):
    """h_next (B, H) of one step of `cell` (module docstring)."""
    kind, option = cell
    plain = not torch.compiler.is_compiling() and (kind == "gru" or option in NONLINEARITIES)
    dt = _plain(_GATES[kind], x, h, w_ih, w_hh, b_ih, b_hh) if plain else None
    if dt is None:
        layer = _ops.gru if kind == "gru" else _ops.rnn
        return layer(x.unsqueeze(0), h, w_ih, w_hh, b_ih, b_hh, None, option, False, need_cache)[1]
    if need_cache:
        return _apply(x, h, w_ih, w_hh, b_ih, b_hh, cell, dt)
    return torch.from_numpy(_forward(cell, x, h, w_ih, w_hh, b_ih, b_hh, dt, False)[0])
