"""The "c" backend: Cython bindings of the C kernels in csrc/ (see csrc/fastrnn.h for every buffer).

Same contract as fastrnn.reference (see fastrnn/_backends.py). With use_blas=True (the "c-blas"
backend, fastrnn/_cblas.py) the big products before and after the time loop are OpenBLAS GEMMs through
scipy.linalg.cython_blas instead of fastrnn's own packed GEMM inside the loop's parallel region. Outputs and the backward's cache are
NumPy arrays allocated here; the kernels run without the GIL; BLAS comes from scipy.linalg.cython_blas.
Every forward / backward takes `nthreads=None`: the kernels' thread count for this call (None: get_num_threads();
fastrnn.torch passes its own, see fastrnn/torch/_ops.py).
"""
import math
import threading

import numpy as np

cimport numpy as cnp
from libc.stdint cimport int64_t, uint64_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

from ._config import get_num_threads

cnp.import_array()

cdef extern from *:
    """
    /* NumPy's headers bring in <complex.h>, whose macro I would replace fastrnn.h's size I */
    #undef I
    """

cdef extern from "fastrnn.h" nogil:
    ctypedef void (*fr_gemm_f32)(char *, char *, int *, int *, int *, float *, float *, int *, float *,
                                 int *, float *, float *, int *) noexcept nogil
    ctypedef void (*fr_gemm_f64)(char *, char *, int *, int *, int *, double *, double *, int *, double *,
                                 int *, double *, double *, int *) noexcept nogil
    int FR_OK
    int FR_ENOMEM
    int FR_ETOOBIG
    void fr_fingerprints(uint64_t *out, const void *const *data, const int64_t *nbytes, int n, int nthreads)
    void fr_release_buffers()
    int fr_rnn_forward_f32(float *out, float *h_n, float *states, float *xproj, const float *x,
                           const float *h0, const float *w_ih, const float *w_hh, const float *b_ih,
                           const float *b_hh, const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu,
                           int reverse, int nthreads, fr_gemm_f32 gemm)
    int fr_rnn_forward_f64(double *out, double *h_n, double *states, double *xproj, const double *x,
                           const double *h0, const double *w_ih, const double *w_hh, const double *b_ih,
                           const double *b_hh, const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu,
                           int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_rnn_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                            float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                            const float *states, const float *w_ih, const float *w_hh,
                            const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu, int reverse,
                            int nthreads, fr_gemm_f32 gemm)
    int fr_rnn_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih,
                            double *db_hh, double *dgh, double *dgx, const double *d_out,
                            const double *d_hn, const double *x, const double *states,
                            const double *w_ih, const double *w_hh, const int64_t *lengths, int64_t T, int64_t B,
                            int64_t I, int64_t H, int relu, int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_gru_forward_f32(float *out, float *h_n, float *states, float *gates, float *xproj,
                           const float *x, const float *h0, const float *w_ih, const float *w_hh,
                           const float *b_ih, const float *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                           int64_t I, int64_t H, int reset_after, int reverse, int nthreads, fr_gemm_f32 gemm)
    int fr_gru_forward_f64(double *out, double *h_n, double *states, double *gates, double *xproj,
                           const double *x, const double *h0, const double *w_ih, const double *w_hh,
                           const double *b_ih, const double *b_hh, const int64_t *lengths, int64_t T, int64_t B,
                           int64_t I, int64_t H, int reset_after, int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_gru_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                            float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                            const float *states, const float *gates, const float *w_ih,
                            const float *w_hh, const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H,
                            int reset_after, int reverse, int nthreads, fr_gemm_f32 gemm)
    int fr_gru_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih,
                            double *db_hh, double *dgh, double *dgx, const double *d_out,
                            const double *d_hn, const double *x, const double *states,
                            const double *gates, const double *w_ih, const double *w_hh,
                            const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int reset_after,
                            int reverse, int nthreads, fr_gemm_f64 gemm)
    int fr_openmp_enabled()
    int fr_max_threads()
    const char *fr_simd()

cdef enum:
    MAXBUF = 16


def build_info():
    """What show_config() reports about the compiled kernels."""
    return {"openmp": bool(fr_openmp_enabled()), "openmp_max_threads": fr_max_threads(),
            "simd": fr_simd().decode()}


def fingerprints(tuple arrays):
    """64-bit fingerprints of the bytes of C-contiguous arrays (at most MAXBUF; fastrnn.h:
    fr_fingerprints), one parallel pass over all of them."""
    cdef const void *p[MAXBUF]
    cdef int64_t nb[MAXBUF]
    cdef uint64_t out[MAXBUF]
    cdef int i, n = len(arrays)
    cdef int64_t total = 0
    cdef cnp.ndarray a
    if n > MAXBUF:
        raise ValueError(f"fingerprints: at most {MAXBUF} arrays")
    for i in range(n):
        a = arrays[i]
        if not cnp.PyArray_IS_C_CONTIGUOUS(a):
            raise ValueError("fingerprints: expected C-contiguous arrays")
        p[i] = cnp.PyArray_DATA(a)
        nb[i] = cnp.PyArray_NBYTES(a)
        total += nb[i]
    # one core hashes ~50 GB/s from cache: waking more threads pays only for buffers that come from memory
    cdef int nt = get_num_threads() if total >= (1 << 23) else 1
    with nogil:
        fr_fingerprints(out, p, nb, n, nt)
    return tuple([out[i] for i in range(n)])


def release_buffers():
    """Free the work buffers of the calling thread and of the OpenMP workers it started."""
    _scratch_by_thread.__dict__.clear()
    with nogil:
        fr_release_buffers()


def _check(int rc, what):
    if rc == FR_ETOOBIG:
        raise ValueError(f"fastrnn: {what}: a size exceeds the 32-bit interface of the BLAS backend "
                         "('c-blas'); use backend='c'")
    if rc != FR_OK:
        raise MemoryError(f"fastrnn: {what}: out of memory for the kernel's work buffers")


# The buffers of a kernel call, as data pointers taken straight from the arrays (typed memoryviews
# cost a microsecond or more each, which a cell's single step, ~20 us, notices). Every array is checked
# to be of the call's dtype, C-contiguous, of exactly the number of elements the kernel will touch
# and, for the outputs, writable; an empty one gives NULL. So whatever the caller (or a tampered
# cache) hands in, the kernel never reads or writes outside an array.

cdef int _dtype_num(cnp.ndarray x) except -1:
    cdef int tn = cnp.PyArray_TYPE(x)
    if tn != cnp.NPY_FLOAT32 and tn != cnp.NPY_FLOAT64:
        raise TypeError(f"fastrnn: kernels take float32 or float64 arrays, got {x.dtype}")
    return tn


cdef int _pointers(void **p, tuple arrays, tuple sizes, int nout, int tn) except -1:
    """p[i] = data of arrays[i], one per entry of `sizes` (its element count; -1: may be empty or of
    that size, the inference forward's states and gates); the first `nout` are written by the kernel.
    ValueError (naming the buffer's position) for an array the kernel must not be given."""
    cdef cnp.ndarray a
    cdef Py_ssize_t i, count = len(sizes)
    cdef int64_t n
    if len(arrays) != count or count > MAXBUF:
        raise ValueError(f"fastrnn: expected {count} kernel buffers, got {len(arrays)}")
    for i in range(count):
        a = arrays[i]
        if (a is None or cnp.PyArray_TYPE(a) != tn or not cnp.PyArray_IS_C_CONTIGUOUS(a)
                or (i < nout and not cnp.PyArray_ISWRITEABLE(a))):
            raise ValueError(f"fastrnn: kernel buffer {i}: expected a C-contiguous"
                             f"{' writable' if i < nout else ''} array of the call's dtype")
        n = cnp.PyArray_SIZE(a)
        if n != <int64_t>sizes[i]:
            raise ValueError(f"fastrnn: kernel buffer {i}: expected {sizes[i]} elements, got {n}")
        p[i] = cnp.PyArray_DATA(a) if n > 0 else NULL
    return 0


cdef const int64_t *_lengths_ptr(lengths, int64_t B, int64_t T) except? NULL:
    cdef cnp.ndarray a
    if lengths is None:
        return NULL
    a = lengths
    if (cnp.PyArray_TYPE(a) != cnp.NPY_INT64 or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or cnp.PyArray_SIZE(a) != B):
        raise ValueError(f"fastrnn: lengths must be a C-contiguous int64 array of {B} elements")
    if B and (a.min() < 0 or a.max() > T):
        raise ValueError(f"fastrnn: lengths must lie in [0, {T}]")
    return <const int64_t *>cnp.PyArray_DATA(a) if B > 0 else NULL


def _kept_size(bint kept, int64_t n):
    return n if kept else 0


# The four entry points: arrays in (outputs first, as the C functions), the C kernel run without the GIL.

def _rnn_fwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu, int reverse, int nt,
             bint use_blas):
    """arrays: out, h_n, states, xproj (written), x, h0, w_ih, w_hh, b_ih, b_hh."""
    cdef void *p[MAXBUF]
    cdef int rc, tn = _dtype_num(arrays[4])
    cdef bint kept = cnp.PyArray_SIZE(arrays[2]) > 0
    _pointers(p, arrays, (T * B * H, B * H, _kept_size(kept, (T + 1) * B * H), T * B * H, T * B * I, B * H,
                          H * I, H * H, H, H), 4, tn)
    cdef const int64_t *plen = _lengths_ptr(lengths, B, T)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            rc = fr_rnn_forward_f32(<float *>p[0], <float *>p[1], <float *>p[2], <float *>p[3], <float *>p[4],
                                    <float *>p[5], <float *>p[6], <float *>p[7], <float *>p[8], <float *>p[9],
                                    plen, T, B, I, H, relu, reverse, nt, (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_rnn_forward_f64(<double *>p[0], <double *>p[1], <double *>p[2], <double *>p[3], <double *>p[4],
                                    <double *>p[5], <double *>p[6], <double *>p[7], <double *>p[8], <double *>p[9],
                                    plen, T, B, I, H, relu, reverse, nt, (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "rnn_forward")


def _rnn_bwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu, int reverse, int nt,
             bint use_blas):
    """arrays: dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx (written), d_out, d_hn, x, states, w_ih, w_hh."""
    cdef void *p[MAXBUF]
    cdef int rc, tn = _dtype_num(arrays[10])
    _pointers(p, arrays, (T * B * I, B * H, H * I, H * H, H, H, T * B * H, T * B * H, T * B * H, B * H,
                          T * B * I, (T + 1) * B * H, H * I, H * H), 8, tn)
    cdef const int64_t *plen = _lengths_ptr(lengths, B, T)
    if p[6] == p[7] and p[6] != NULL and (plen != NULL or reverse):
        raise ValueError("fastrnn: dgh and dgx may be one buffer only without lengths and reverse")
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            rc = fr_rnn_backward_f32(<float *>p[0], <float *>p[1], <float *>p[2], <float *>p[3], <float *>p[4],
                                     <float *>p[5], <float *>p[6], <float *>p[7], <float *>p[8], <float *>p[9],
                                     <float *>p[10], <float *>p[11], <float *>p[12], <float *>p[13],
                                     plen, T, B, I, H, relu, reverse, nt, (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_rnn_backward_f64(<double *>p[0], <double *>p[1], <double *>p[2], <double *>p[3], <double *>p[4],
                                     <double *>p[5], <double *>p[6], <double *>p[7], <double *>p[8], <double *>p[9],
                                     <double *>p[10], <double *>p[11], <double *>p[12], <double *>p[13],
                                     plen, T, B, I, H, relu, reverse, nt, (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "rnn_backward")


def _gru_fwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int reset_after, int reverse,
             int nt, bint use_blas):
    """arrays: out, h_n, states, gates, xproj (written), x, h0, w_ih, w_hh, b_ih, b_hh."""
    cdef void *p[MAXBUF]
    cdef int rc, tn = _dtype_num(arrays[5])
    cdef bint kept = cnp.PyArray_SIZE(arrays[2]) > 0
    _pointers(p, arrays, (T * B * H, B * H, _kept_size(kept, (T + 1) * B * H), _kept_size(kept, T * B * 4 * H),
                          T * B * 3 * H, T * B * I, B * H, 3 * H * I, 3 * H * H, 3 * H, 3 * H), 5, tn)
    cdef const int64_t *plen = _lengths_ptr(lengths, B, T)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            rc = fr_gru_forward_f32(<float *>p[0], <float *>p[1], <float *>p[2], <float *>p[3], <float *>p[4],
                                    <float *>p[5], <float *>p[6], <float *>p[7], <float *>p[8], <float *>p[9],
                                    <float *>p[10], plen, T, B, I, H, reset_after, reverse, nt,
                                    (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_gru_forward_f64(<double *>p[0], <double *>p[1], <double *>p[2], <double *>p[3], <double *>p[4],
                                    <double *>p[5], <double *>p[6], <double *>p[7], <double *>p[8], <double *>p[9],
                                    <double *>p[10], plen, T, B, I, H, reset_after, reverse, nt,
                                    (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "gru_forward")


def _gru_bwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int reset_after, int reverse,
             int nt, bint use_blas):
    """arrays: dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx (written), d_out, d_hn, x, states, gates,
    w_ih, w_hh."""
    cdef void *p[MAXBUF]
    cdef int rc, tn = _dtype_num(arrays[10])
    _pointers(p, arrays, (T * B * I, B * H, 3 * H * I, 3 * H * H, 3 * H, 3 * H, T * B * 3 * H, T * B * 3 * H,
                          T * B * H, B * H, T * B * I, (T + 1) * B * H, T * B * 4 * H, 3 * H * I, 3 * H * H), 8, tn)
    cdef const int64_t *plen = _lengths_ptr(lengths, B, T)
    with nogil:
        if tn == cnp.NPY_FLOAT32:
            rc = fr_gru_backward_f32(<float *>p[0], <float *>p[1], <float *>p[2], <float *>p[3], <float *>p[4],
                                     <float *>p[5], <float *>p[6], <float *>p[7], <float *>p[8], <float *>p[9],
                                     <float *>p[10], <float *>p[11], <float *>p[12], <float *>p[13], <float *>p[14],
                                     plen, T, B, I, H, reset_after, reverse, nt,
                                     (<fr_gemm_f32>sgemm if use_blas else NULL))
        else:
            rc = fr_gru_backward_f64(<double *>p[0], <double *>p[1], <double *>p[2], <double *>p[3], <double *>p[4],
                                     <double *>p[5], <double *>p[6], <double *>p[7], <double *>p[8], <double *>p[9],
                                     <double *>p[10], <double *>p[11], <double *>p[12], <double *>p[13],
                                     <double *>p[14], plen, T, B, I, H, reset_after, reverse, nt,
                                     (<fr_gemm_f64>dgemm if use_blas else NULL))
    _check(rc, "gru_backward")


# The backend contract (fastrnn/_backends.py): arrays validated and contiguous by fastrnn.functional.
# The cache keeps the sizes of its forward; its backward takes them from there, never from the arrays.

_scratch_by_thread = threading.local()


def _scratch(dt, *shapes):
    """Scratch arrays of the given shapes, carved from one buffer that this Python thread reuses from
    call to call (large fresh allocations cost page faults on every call)."""
    sizes = [math.prod(s) for s in shapes]      # (math.prod: np.prod costs microseconds, a cell's step ~20)
    total = sum(sizes)
    key = dt.char
    buf = getattr(_scratch_by_thread, key, None)
    if buf is None or buf.shape[0] < total:
        buf = np.empty(total, dt)
        setattr(_scratch_by_thread, key, buf)
    out, start = [], 0
    for shape, n in zip(shapes, sizes):
        out.append(buf[start:start + n].reshape(shape))
        start += n
    return out


def _grads(dt, G_H, I, H, grads):
    """The weight and bias gradients the kernels add into: the caller's `grads` (validated by
    fastrnn.functional; a None bias gradient gets a zeroed scratch), or zeroed new arrays."""
    if grads is None:
        return (np.zeros((G_H, I), dt), np.zeros((G_H, H), dt), np.zeros(G_H, dt), np.zeros(G_H, dt))
    dw_ih, dw_hh, db_ih, db_hh = grads
    return (dw_ih, dw_hh, np.zeros(G_H, dt) if db_ih is None else db_ih, np.zeros(G_H, dt) if db_hh is None else db_hh)


def _kept(dt, shape, need_cache):
    """A buffer the backward needs, or an empty one (a NULL pointer: the kernels' inference mode)."""
    return np.empty(shape if need_cache else 0, dt)


def rnn_forward(x, h0, w_ih, w_hh, b_ih, b_hh, nonlinearity="tanh", reverse=False, lengths=None,
                need_cache=True, use_blas=False, nthreads=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    out, h_n = np.empty((T, B, H), dt), np.empty((B, H), dt)
    states = _kept(dt, (T + 1, B, H), need_cache)
    xproj, = _scratch(dt, (T, B, H))
    relu = nonlinearity == "relu"
    _rnn_fwd((out, h_n, states, xproj, x, h0, w_ih, w_hh, b_ih, b_hh), lengths, T, B, I, H,
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
    dx, dh0 = np.empty((T, B, I), dt), np.empty((B, H), dt)
    dw_ih, dw_hh, db_ih, db_hh = _grads(dt, H, I, H, grads)
    # input and recurrent pre-activation gradients coincide when steps and times do
    if lengths is None and not cache["reverse"]:
        dgh, = _scratch(dt, (T, B, H))
        dgx = dgh
    else:
        dgh, dgx = _scratch(dt, (T, B, H), (T, B, H))
    _rnn_bwd((dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, w_ih, w_hh),
             lengths, T, B, I, H, cache["relu"], cache["reverse"], nthreads or get_num_threads(), cache["use_blas"])
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh


def gru_forward(x, h0, w_ih, w_hh, b_ih, b_hh, reset_after=True, reverse=False, lengths=None,
                need_cache=True, use_blas=False, nthreads=None):
    T, B, I = x.shape
    H = w_hh.shape[1]
    dt = x.dtype
    out, h_n = np.empty((T, B, H), dt), np.empty((B, H), dt)
    states, gates = _kept(dt, (T + 1, B, H), need_cache), _kept(dt, (T, B, 4 * H), need_cache)
    xproj, = _scratch(dt, (T, B, 3 * H))
    _gru_fwd((out, h_n, states, gates, xproj, x, h0, w_ih, w_hh, b_ih, b_hh), lengths, T, B, I, H,
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
    dx, dh0 = np.empty((T, B, I), dt), np.empty((B, H), dt)
    dw_ih, dw_hh, db_ih, db_hh = _grads(dt, 3 * H, I, H, grads)
    dgh, dgx = _scratch(dt, (T, B, 3 * H), (T, B, 3 * H))
    _gru_bwd((dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, gates, w_ih, w_hh),
             lengths, T, B, I, H, cache["reset_after"], cache["reverse"], nthreads or get_num_threads(), cache["use_blas"])
    return dx, dh0, dw_ih, dw_hh, db_ih, db_hh
