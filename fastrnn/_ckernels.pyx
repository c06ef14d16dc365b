"""The "c" backend: Cython bindings of the C kernels in csrc/ (see csrc/fastrnn.h for every buffer).

Same contract as fastrnn.reference (see fastrnn/_backends.py). With use_blas=True (the "c-blas"
backend, fastrnn/_cblas.py) the big products before and after the time loop are OpenBLAS GEMMs through
scipy.linalg.cython_blas instead of fastrnn's own packed GEMM inside the loop's parallel region. Outputs and the backward's cache are
NumPy arrays allocated here; the kernels run without the GIL; BLAS comes from scipy.linalg.cython_blas.
"""
import threading

import numpy as np

from cython cimport floating
from libc.stdint cimport int64_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

from ._config import get_num_threads

cdef extern from "fastrnn.h" nogil:
    ctypedef void (*fr_gemm_f32)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                                 int *, float *, float *, int *) noexcept nogil
    ctypedef void (*fr_gemm_f64)(char *, char *, int *, int *, int *, double *, double *, int *, double *,
                                 int *, double *, double *, int *) noexcept nogil
    int FR_OK
    int fr_rnn_forward_f32(float *out, float *h_n, float *states, float *xproj, const float *x,
                           const float *h0, const float *w_ih, const float *w_hh, const float *b_ih,
                           const float *b_hh, const int64_t *lengths, int T, int B, int I, int H, int relu,
                           int reverse, int nthreads, fr_gemm_f32 gemm)
    int fr_rnn_forward_f64(double *out, double *h_n, double *states, double *xproj, const double *x,
                           const double *h0, const double *w_ih, const double *w_hh, const double *b_ih,
                           const double *b_hh, const int64_t *lengths, int T, int B, int I, int H, int relu,
                           int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_rnn_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                            float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                            const float *states, const float *w_ih, const float *w_hh,
                            const int64_t *lengths, int T, int B, int I, int H, int relu, int reverse,
                            int nthreads, fr_gemm_f32 gemm)
    int fr_rnn_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih,
                            double *db_hh, double *dgh, double *dgx, const double *d_out,
                            const double *d_hn, const double *x, const double *states,
                            const double *w_ih, const double *w_hh, const int64_t *lengths, int T, int B,
                            int I, int H, int relu, int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_gru_forward_f32(float *out, float *h_n, float *states, float *gates, float *xproj,
                           const float *x, const float *h0, const float *w_ih, const float *w_hh,
                           const float *b_ih, const float *b_hh, const int64_t *lengths, int T, int B,
                           int I, int H, int reset_after, int reverse, int nthreads, fr_gemm_f32 gemm)
    int fr_gru_forward_f64(double *out, double *h_n, double *states, double *gates, double *xproj,
                           const double *x, const double *h0, const double *w_ih, const double *w_hh,
                           const double *b_ih, const double *b_hh, const int64_t *lengths, int T, int B,
                           int I, int H, int reset_after, int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_gru_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                            float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                            const float *states, const float *gates, const float *w_ih,
                            const float *w_hh, const int64_t *lengths, int T, int B, int I, int H,
                            int reset_after, int reverse, int nthreads, fr_gemm_f32 gemm)
    int fr_gru_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih,
                            double *db_hh, double *dgh, double *dgx, const double *d_out,
                            const double *d_hn, const double *x, const double *states,
                            const double *gates, const double *w_ih, const double *w_hh,
                            const int64_t *lengths, int T, int B, int I, int H, int reset_after,
                            int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_openmp_enabled()
    int fr_max_threads()
    const char *fr_simd()

cdef int INT_MAX = 2147483647


def build_info():
    """What show_config() reports about the compiled kernels."""
    return {"openmp": bool(fr_openmp_enabled()), "openmp_max_threads": fr_max_threads(),
            "simd": fr_simd().decode()}


cdef inline floating* _p(floating[::1] a) noexcept nogil:
    """Pointer to a flat buffer's first element (NULL when it is empty)."""
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const floating* _c(const floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const int64_t* _plen(const int64_t[::1] a) noexcept nogil:
    return &a[0] if a is not None and a.shape[0] > 0 else NULL


def _check_sizes(T, B, I, H, G):
    """BLAS takes int sizes: T*B rows and every width must fit."""
    if T * B > INT_MAX or G * H > INT_MAX or I > INT_MAX:
        raise MemoryError(f"sizes T={T} B={B} I={I} H={H} exceed what the kernels can index")


def _check(int rc, what):
    if rc != FR_OK:
        raise MemoryError(f"fastrnn: {what}: out of memory for the kernel's work buffers")


# The four typed entry points: flat (1-D) views in, the C kernel run without the GIL.

def _rnn_fwd(floating[::1] out, floating[::1] h_n, floating[::1] states, floating[::1] xproj,
             const floating[::1] x, const floating[::1] h0, const floating[::1] w_ih,
             const floating[::1] w_hh, const floating[::1] b_ih, const floating[::1] b_hh,
             const int64_t[::1] lengths, int T, int B, int I, int H, int relu, int reverse, int nt, bint use_blas):
    cdef int rc
    cdef const int64_t *plen = _plen(lengths)
    with nogil:
        if floating is float:
            rc = fr_rnn_forward_f32(_p(out), _p(h_n), _p(states), _p(xproj), _c(x), _c(h0), _c(w_ih),
                                    _c(w_hh), _c(b_ih), _c(b_hh), plen, T, B, I, H, relu, reverse, nt,
                                    (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_rnn_forward_f64(_p(out), _p(h_n), _p(states), _p(xproj), _c(x), _c(h0), _c(w_ih),
                                    _c(w_hh), _c(b_ih), _c(b_hh), plen, T, B, I, H, relu, reverse, nt,
                                    (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "rnn_forward")


def _rnn_bwd(floating[::1] dx, floating[::1] dh0, floating[::1] dw_ih, floating[::1] dw_hh,
             floating[::1] db_ih, floating[::1] db_hh, floating[::1] dgh, floating[::1] dgx,
             const floating[::1] d_out, const floating[::1] d_hn, const floating[::1] x,
             const floating[::1] states, const floating[::1] w_ih, const floating[::1] w_hh,
             const int64_t[::1] lengths, int T, int B, int I, int H, int relu, int reverse, int nt, bint use_blas):
    cdef int rc
    cdef const int64_t *plen = _plen(lengths)
    with nogil:
        if floating is float:
            rc = fr_rnn_backward_f32(_p(dx), _p(dh0), _p(dw_ih), _p(dw_hh), _p(db_ih), _p(db_hh), _p(dgh),
                                     _p(dgx), _c(d_out), _c(d_hn), _c(x), _c(states), _c(w_ih), _c(w_hh),
                                     plen, T, B, I, H, relu, reverse, nt, (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_rnn_backward_f64(_p(dx), _p(dh0), _p(dw_ih), _p(dw_hh), _p(db_ih), _p(db_hh), _p(dgh),
                                     _p(dgx), _c(d_out), _c(d_hn), _c(x), _c(states), _c(w_ih), _c(w_hh),
                                     plen, T, B, I, H, relu, reverse, nt, (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "rnn_backward")


def _gru_fwd(floating[::1] out, floating[::1] h_n, floating[::1] states, floating[::1] gates,
             floating[::1] xproj, const floating[::1] x, const floating[::1] h0, const floating[::1] w_ih,
             const floating[::1] w_hh, const floating[::1] b_ih, const floating[::1] b_hh,
             const int64_t[::1] lengths, int T, int B, int I, int H, int reset_after, int reverse, int nt, bint use_blas):
    cdef int rc
    cdef const int64_t *plen = _plen(lengths)
    with nogil:
        if floating is float:
            rc = fr_gru_forward_f32(_p(out), _p(h_n), _p(states), _p(gates), _p(xproj), _c(x), _c(h0),
                                    _c(w_ih), _c(w_hh), _c(b_ih), _c(b_hh), plen, T, B, I, H, reset_after,
                                    reverse, nt, (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_gru_forward_f64(_p(out), _p(h_n), _p(states), _p(gates), _p(xproj), _c(x), _c(h0),
                                    _c(w_ih), _c(w_hh), _c(b_ih), _c(b_hh), plen, T, B, I, H, reset_after,
                                    reverse, nt, (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "gru_forward")


def _gru_bwd(floating[::1] dx, floating[::1] dh0, floating[::1] dw_ih, floating[::1] dw_hh,
             floating[::1] db_ih, floating[::1] db_hh, floating[::1] dgh, floating[::1] dgx,
             const floating[::1] d_out, const floating[::1] d_hn, const floating[::1] x,
             const floating[::1] states, const floating[::1] gates, const floating[::1] w_ih,
             const floating[::1] w_hh, const int64_t[::1] lengths, int T, int B, int I, int H,
             int reset_after, int reverse, int nt, bint use_blas):
    cdef int rc
    cdef const int64_t *plen = _plen(lengths)
    with nogil:
        if floating is float:
            rc = fr_gru_backward_f32(_p(dx), _p(dh0), _p(dw_ih), _p(dw_hh), _p(db_ih), _p(db_hh), _p(dgh),
                                     _p(dgx), _c(d_out), _c(d_hn), _c(x), _c(states), _c(gates), _c(w_ih),
                                     _c(w_hh), plen, T, B, I, H, reset_after, reverse, nt, (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_gru_backward_f64(_p(dx), _p(dh0), _p(dw_ih), _p(dw_hh), _p(db_ih), _p(db_hh), _p(dgh),
                                     _p(dgx), _c(d_out), _c(d_hn), _c(x), _c(states), _c(gates), _c(w_ih),
                                     _c(w_hh), plen, T, B, I, H, reset_after, reverse, nt, (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "gru_backward")


# The backend contract (fastrnn/_backends.py): arrays validated and contiguous by fastrnn.functional.

_scratch_by_thread = threading.local()


def _scratch(dt, *shapes):
    """Scratch arrays of the given shapes, carved from one buffer that this Python thread reuses from
    call to call (large fresh allocations cost page faults on every call)."""
    sizes = [int(np.prod(s)) for s in shapes]
    buf = getattr(_scratch_by_thread, dt.name, None)
    if buf is None or buf.size < sum(sizes):
        buf = np.empty(sum(sizes), dt)
        setattr(_scratch_by_thread, dt.name, buf)
    out, start = [], 0
    for shape, n in zip(shapes, sizes):
        out.append(buf[start:start + n].reshape(shape))
        start += n
    return out


def _flat(*arrays):
    return [a.reshape(-1) for a in arrays]


def _grads(x, w_ih, w_hh):
    """Zeroed weight and bias gradients (the kernels add into them)."""
    G_H, dt = w_hh.shape[0], x.dtype
    return (np.zeros(w_ih.shape, dt), np.zeros(w_hh.shape, dt), np.zeros(G_H, dt), np.zeros(G_H, dt))


def _kept(dt, shape, need_cache):
    """A buffer the backward needs, or an empty one (a NULL pointer: the kernels' inference mode)."""
    return np.empty(shape if need_cache else 0, dt)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False, lengths=None,
                need_cache=True, use_blas=False):
    T, B, I = x.shape
    H = w_hh.shape[1]
    _check_sizes(T, B, I, H, 1)
    dt = x.dtype
    out, h_n = np.empty((T, B, H), dt), np.empty((B, H), dt)
    states = _kept(dt, (T + 1, B, H), need_cache)
    xproj, = _scratch(dt, (T, B, H))
    relu = nonlinearity == "relu"
    _rnn_fwd(*_flat(out, h_n, states, xproj, x, h0, w_ih, w_hh, b_ih, b_hh), lengths, T, B, I, H,
             relu, reverse, get_num_threads(), use_blas)
    if not need_cache:
        return out, h_n, None
    cache = {"x": x, "states": states, "w_ih": w_ih, "w_hh": w_hh, "lengths": lengths, "relu": relu,
             "reverse": reverse, "use_blas": use_blas}
    return out, h_n, cache


def rnn_backward(d_out, d_hn, cache):
    x, states, w_ih, w_hh, lengths = (cache[k] for k in ("x", "states", "w_ih", "w_hh", "lengths"))
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    dx, dh0 = np.empty((T, B, I), dt), np.empty((B, H), dt)
    dw_ih, dw_hh, db_ih, db_hh = _grads(x, w_ih, w_hh)
    # input and recurrent pre-activation gradients coincide when steps and times do
    if lengths is None and not cache["reverse"]:
        dgh, = _scratch(dt, (T, B, H))
        dgx = dgh
    else:
        dgh, dgx = _scratch(dt, (T, B, H), (T, B, H))
    _rnn_bwd(*_flat(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, w_ih, w_hh),
             lengths, T, B, I, H, cache["relu"], cache["reverse"], get_num_threads(), cache["use_blas"])
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=True, reverse=False, lengths=None,
                need_cache=True, use_blas=False):
    T, B, I = x.shape
    H = w_hh.shape[1]
    _check_sizes(T, B, I, H, 3)
    dt = x.dtype
    out, h_n = np.empty((T, B, H), dt), np.empty((B, H), dt)
    states, gates = _kept(dt, (T + 1, B, H), need_cache), _kept(dt, (T, B, 4 * H), need_cache)
    xproj, = _scratch(dt, (T, B, 3 * H))
    _gru_fwd(*_flat(out, h_n, states, gates, xproj, x, h0, w_ih, w_hh, b_ih, b_hh), lengths, T, B, I, H,
             reset_after, reverse, get_num_threads(), use_blas)
    if not need_cache:
        return out, h_n, None
    cache = {"x": x, "states": states, "gates": gates, "w_ih": w_ih, "w_hh": w_hh, "lengths": lengths,
             "reset_after": reset_after, "reverse": reverse, "use_blas": use_blas}
    return out, h_n, cache


def gru_backward(d_out, d_hn, cache):
    x, states, gates, w_ih, w_hh, lengths = (cache[k] for k in ("x", "states", "gates", "w_ih", "w_hh",
                                                                 "lengths"))
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    dx, dh0 = np.empty((T, B, I), dt), np.empty((B, H), dt)
    dw_ih, dw_hh, db_ih, db_hh = _grads(x, w_ih, w_hh)
    dgh, dgx = _scratch(dt, (T, B, 3 * H), (T, B, 3 * H))
    _gru_bwd(*_flat(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, gates, w_ih,
                    w_hh), lengths, T, B, I, H, cache["reset_after"], cache["reverse"], get_num_threads(),
             cache["use_blas"])
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
