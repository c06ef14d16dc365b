# cython: wraparound=True, boundscheck=True
"""The "c" backend (and, with use_blas=True, "c-blas": fastrnn/_cblas.py): the contract of
fastrnn/_backends.py on the C kernels, whose raw bindings are fastrnn/_ckernels.pyx.

What this module adds to the bindings: the outputs and the backward's cache as NumPy arrays (the cache
keeps the sizes of its forward; its backward takes them from there, never from the arrays), the
gradients to add into, and a per-thread scratch pool for the kernels' work arrays; every array of
4 KiB or more that it allocates starts on a 64-byte line (_ckernels.empty_aligned). The arrays come
validated and contiguous from fastrnn.functional (or fastrnn.torch); every call takes `nthreads=None`
(None: get_num_threads()).
"""
import math
import threading

import numpy as np

from . import _ckernels as _ck
from ._config import get_num_threads

build_info = _ck.build_info
fingerprints = _ck.fingerprints

_scratch_by_thread = threading.local()


def release_buffers():
    """Free the work buffers kept for the calling thread's next call (its scratch arrays here and the
    C buffers of the thread and of the OpenMP workers it started) and the blocks kept for the next
    large arrays (_ckernels.empty_aligned), which no array uses any more."""
    _scratch_by_thread.__dict__.clear()
    _ck.release_buffers()
    _ck.release_kept()


_empty = _ck.empty_aligned     # every array a kernel writes starts on a cache line (_ckernels.pyx)


def _zeros(shape, dt):
    a = _empty(shape, dt)
    a.fill(0)
    return a


_SCRATCH_MEMO = 8       # requests remembered per thread (a layer's forward and backward need two or three)


def _scratch(dt, *shapes):
    """Scratch arrays of the given shapes, carved from one buffer that this Python thread reuses from
    call to call (large fresh allocations cost page faults on every call), each starting on a cache
    line. The views of the last few requests are remembered (carving them again cost a cell's step
    0.9 µs of its ~8); a larger request replaces the buffer and forgets them."""
    key = (dt.char, shapes)
    memo = _scratch_by_thread.__dict__.setdefault("memo", {})
    out = memo.get(key)
    if out is not None:
        return out
    line = 64 // dt.itemsize
    sizes = [math.prod(s) for s in shapes]      # (math.prod: np.prod costs microseconds, a cell's step ~20)
    spans = [(n + line - 1) // line * line for n in sizes]
    buf = getattr(_scratch_by_thread, dt.char, None)
    if buf is None or buf.shape[0] < sum(spans):
        buf = _empty(sum(spans), dt)
        setattr(_scratch_by_thread, dt.char, buf)
        memo.clear()                             # (their views would keep the old buffer alive)
    out, start = [], 0
    for shape, n, span in zip(shapes, sizes, spans):
        out.append(buf[start:start + n].reshape(shape))
        start += span
    if len(memo) >= _SCRATCH_MEMO:
        memo.clear()
    memo[key] = out
    return out


def _pregrads(dt, cache, T, B, width, shared_width):
    """The backward's scratch dgh, dgx (csrc/fastrnn.h): one buffer of rows of `shared_width` when
    steps and times coincide (no lengths, no reverse), else two of rows of `width`."""
    if cache["lengths"] is None and not cache["reverse"]:
        dgh, = _scratch(dt, (T, B, shared_width))
        return dgh, dgh
    return tuple(_scratch(dt, (T, B, width), (T, B, width)))


def _grads(dt, G_H, I, H, grads):
    """(dw_ih, dw_hh, db_ih, db_hh, overwrite): the caller's `grads` for the kernels to add into
    (validated by fastrnn.functional; a None bias gradient gets a zeroed scratch), or new arrays that
    they write (overwrite, csrc/fastrnn.h: no zeroing pass first, which at a cell's step was a fifth of
    its backward)."""
    if grads is None:
        return _empty((G_H, I), dt), _empty((G_H, H), dt), _empty(G_H, dt), _empty(G_H, dt), True
    dw_ih, dw_hh, db_ih, db_hh = grads
    return (dw_ih, dw_hh, _zeros(G_H, dt) if db_ih is None else db_ih, _zeros(G_H, dt) if db_hh is None else db_hh,
            False)


def _kept(dt, shape, need_cache):
    """A buffer the backward needs, or an empty one (a NULL pointer: the kernels' inference mode)."""
    return _empty(shape if need_cache else 0, dt)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False, lengths=None,
                need_cache=True, use_blas=False, nthreads=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    out, h_n = _empty((T, B, H), dt), _empty((B, H), dt)
    states = _kept(dt, (T + 1, B, H), need_cache)
    xproj, = _scratch(dt, (T, B, H))
    relu = nonlinearity == "relu"
    _ck._rnn_fwd((out, h_n, states, xproj, x, h0, w_ih, w_hh, b_ih, b_hh), lengths, T, B, I, H,
             relu, reverse, nthreads or get_num_threads(), use_blas)
    if not need_cache:
        return out, h_n, None
    cache = {"sizes": (T, B, I, H), "x": x, "states": states, "w_ih": w_ih, "w_hh": w_hh, "lengths": lengths,
             "relu": relu, "reverse": reverse, "use_blas": use_blas}
    return out, h_n, cache


def rnn_backward(d_out, d_hn, cache, grads=None, nthreads=None):
    x, states, w_ih, w_hh, lengths = (cache[k] for k in ("x", "states", "w_ih", "w_hh", "lengths"))
    T, B, I, H = cache["sizes"]
    dt = x.dtype
    dx, dh0 = _empty((T, B, I), dt), _empty((B, H), dt)
    dw_ih, dw_hh, db_ih, db_hh, overwrite = _grads(dt, H, I, H, grads)
    dgh, dgx = _pregrads(dt, cache, T, B, H, H)
    _ck._rnn_bwd((dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, w_ih, w_hh),
             lengths, T, B, I, H, cache["relu"], cache["reverse"], nthreads or get_num_threads(), cache["use_blas"],
             overwrite)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=True, reverse=False, lengths=None,
                need_cache=True, use_blas=False, nthreads=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    out, h_n = _empty((T, B, H), dt), _empty((B, H), dt)
    states, gates = _kept(dt, (T + 1, B, H), need_cache), _kept(dt, (T, B, 4 * H), need_cache)
    xproj, = _scratch(dt, (T, B, 3 * H))
    _ck._gru_fwd((out, h_n, states, gates, xproj, x, h0, w_ih, w_hh, b_ih, b_hh), lengths, T, B, I, H,
             reset_after, reverse, nthreads or get_num_threads(), use_blas)
    if not need_cache:
        return out, h_n, None
    cache = {"sizes": (T, B, I, H), "x": x, "states": states, "gates": gates, "w_ih": w_ih, "w_hh": w_hh,
             "lengths": lengths, "reset_after": reset_after, "reverse": reverse, "use_blas": use_blas}
    return out, h_n, cache


def gru_backward(d_out, d_hn, cache, grads=None, nthreads=None):
    x, states, gates, w_ih, w_hh, lengths = (cache[k] for k in ("x", "states", "gates", "w_ih", "w_hh",
                                                                 "lengths"))
    T, B, I, H = cache["sizes"]
    dt = x.dtype
    dx, dh0 = _empty((T, B, I), dt), _empty((B, H), dt)
    dw_ih, dw_hh, db_ih, db_hh, overwrite = _grads(dt, 3 * H, I, H, grads)
    dgh, dgx = _pregrads(dt, cache, T, B, 3 * H, (4 if cache["reset_after"] else 3) * H)
    _ck._gru_bwd((dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, gates, w_ih, w_hh),
             lengths, T, B, I, H, cache["reset_after"], cache["reverse"], nthreads or get_num_threads(), cache["use_blas"],
             overwrite)
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
