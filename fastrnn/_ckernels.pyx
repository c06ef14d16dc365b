"""Cython bindings of the C kernels in csrc/ (see csrc/fastrnn.h for every buffer): the raw calls
_rnn_fwd / _rnn_bwd / _gru_fwd / _gru_bwd on tuples of arrays, plus the SIMD level, build
information, fingerprints and the C work buffers.

The backend built on them (outputs, caches, scratch arrays: the contract of fastrnn/_backends.py)
is fastrnn/_cbackend.py. Every array handed in is checked here before the kernel runs without the
GIL (_pointers); with use_blas=True (the "c-blas" backend) the big products before and after the time
loop are OpenBLAS GEMMs through scipy.linalg.cython_blas instead of fastrnn's own packed GEMM.
"""
cimport numpy as cnp
import numpy as np
from libc.stdint cimport int64_t, uint64_t
from scipy.linalg.cython_blas cimport dgemm, sgemm

from cython cimport floating

from ._config import SIMD_LEVELS, SimdError, get_num_threads, simd_request

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
    ctypedef struct fr_layer:
        int64_t T, B, I, H
        const int64_t *lengths
        int reverse
        int variant
        int nthreads
        int overwrite
    int FR_OK
    int FR_ENOMEM
    int FR_ETOOBIG
    int FR_EUNKNOWN
    int FR_ENOTBUILT
    int FR_EUNSUPPORTED
    void fr_fingerprints(uint64_t *out, const void *const *data, const int64_t *nbytes, int n, int nthreads)
    void fr_release_buffers()
    # (the arguments are named as in fastrnn.h; p[i] of the binding is the i-th)
    int fr_rnn_forward_f32(float *, float *, float *, float *, const float *, const float *, const float *,
                           const float *, const float *, const float *, const fr_layer *, fr_gemm_f32)
    int fr_rnn_forward_f64(double *, double *, double *, double *, const double *, const double *,
                           const double *, const double *, const double *, const double *, const fr_layer *,
                           fr_gemm_f64)
    int fr_rnn_backward_f32(float *, float *, float *, float *, float *, float *, float *, float *,
                            const float *, const float *, const float *, const float *, const float *,
                            const float *, const fr_layer *, fr_gemm_f32)
    int fr_rnn_backward_f64(double *, double *, double *, double *, double *, double *, double *, double *,
                            const double *, const double *, const double *, const double *, const double *,
                            const double *, const fr_layer *, fr_gemm_f64)
    int fr_gru_forward_f32(float *, float *, float *, float *, float *, const float *, const float *,
                           const float *, const float *, const float *, const float *, const fr_layer *,
                           fr_gemm_f32)
    int fr_gru_forward_f64(double *, double *, double *, double *, double *, const double *, const double *,
                           const double *, const double *, const double *, const double *, const fr_layer *,
                           fr_gemm_f64)
    int fr_gru_backward_f32(float *, float *, float *, float *, float *, float *, float *, float *,
                            const float *, const float *, const float *, const float *, const float *,
                            const float *, const float *, const fr_layer *, fr_gemm_f32)
    int fr_gru_backward_f64(double *, double *, double *, double *, double *, double *, double *, double *,
                            const double *, const double *, const double *, const double *, const double *,
                            const double *, const double *, const fr_layer *, fr_gemm_f64)
    int fr_simd_select(const char *name)
    const char *fr_simd()
    const char *fr_simd_built()
    const char *fr_simd_cpu()
    const char *fr_simd_detail()
    int fr_openmp_enabled()
    int fr_max_threads()

cdef enum:
    MAXBUF = 16


def _select_simd(name):
    """Run the kernels of instruction-set level `name` ("baseline", "avx2", "avx512", "native"; None or
    "": the widest this CPU runs) from now on. SimdError (a ValueError) for a name that is not a level,
    a level not built, or one this CPU cannot run; the level then stays as it was. Called once at
    import with FASTRNN_SIMD; the tests call it to run every level (never while kernels run)."""
    cdef bytes b = (name or "").encode()
    cdef int rc = fr_simd_select(b)
    if rc == FR_OK:
        return
    built, cpu = fr_simd_built().decode(), fr_simd_cpu().decode()
    if not name:
        raise SimdError(f"fastrnn: this CPU runs none of the SIMD levels built ({built}): a FASTRNN_NATIVE=1 "
                        "build for another CPU; build again without FASTRNN_NATIVE")
    why = {FR_EUNKNOWN: f"not a level (expected one of {SIMD_LEVELS})",
           FR_ENOTBUILT: f"this build has only {built}",
           FR_EUNSUPPORTED: f"this CPU cannot run it; it runs {cpu or 'none of the levels built'}"}[rc]
    raise SimdError(f"fastrnn: SIMD level {name!r}: {why}")


def simd_levels():
    """(the level in use, the levels built, the levels this CPU runs), widest first."""
    return fr_simd().decode(), fr_simd_built().decode().split(), fr_simd_cpu().decode().split()


def build_info():
    """What show_config() reports about the compiled kernels."""
    now, built, cpu = simd_levels()
    return {"openmp": bool(fr_openmp_enabled()), "openmp_max_threads": fr_max_threads(),
            "simd": f"{now} ({fr_simd_detail().decode()}; built: {' '.join(built)}; this CPU runs: {' '.join(cpu)})"}


_select_simd(simd_request())


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
    # One core hashes about 42 GB/s from L2, two about 100 (Sapphire Rapids): from 256 KiB (a cell's
    # weights at H = 256) the threads share the pass. A forward takes its snapshot right after its
    # kernel, whose OpenMP workers are still spinning then (GOMP_SPINCOUNT, fastrnn/_config.py). A GRU
    # cell's training step at B = 1, H = 256 (2 threads): 400 us with one thread here, 260 with two.
    cdef int nt = get_num_threads() if total >= (1 << 18) else 1
    with nogil:
        fr_fingerprints(out, p, nb, n, nt)
    return tuple([out[i] for i in range(n)])


# Arrays the kernels' threads write start on a cache line: each thread writes its slice of hidden
# units of every row, and a slice's edge inside a line makes that line move between the two cores at
# every row (README: "How it is fast").
cdef enum:
    LINE = 64
    SMALL = 4096
    KEPT_FROM = 128 << 10     # arrays of this many bytes or more come from kept blocks (below)
    PAGE = 4096
    NUMPY_DOMAIN = 389047     # numpy.lib.tracemalloc_domain: traced as NumPy's own arrays are


def empty_aligned(shape, dtype):
    """np.empty(shape, dtype) whose data start on a 64-byte boundary: from SMALL bytes up a view of a
    slightly larger array, from KEPT_FROM bytes up an array on a kept block (_kept_array); below SMALL,
    the plain array (it holds few rows, so few lines are shared, and the view would cost a cell's step
    a few percent). `shape`: an int or a tuple of ints; `dtype`: a numpy.dtype."""
    cdef Py_ssize_t n = 1, d
    shape = (shape,) if isinstance(shape, int) else shape
    for d in shape:
        n *= d
    cdef Py_ssize_t item = dtype.itemsize
    if n * item < SMALL:
        return np.empty(shape, dtype)
    if n * item >= KEPT_FROM:
        return _kept_array(shape, dtype, n * item)
    cdef cnp.ndarray buf = np.empty(n + LINE // item, dtype)
    cdef Py_ssize_t off = ((LINE - <Py_ssize_t>cnp.PyArray_DATA(buf) % LINE) % LINE) // item
    return buf[off:off + n].reshape(shape)


# The large arrays of a call (outputs, the backward's cache, fresh gradients, scratch) live on blocks
# that are kept when their arrays die and handed to the next array of the same size. A fresh large
# allocation costs page faults at first touch, on every call (measured, a torch RNN training step at
# 300 x 20 x 800 x 800 with its gradients set to None each step: 3700 faults and 75 ms of system time
# a step, a step of 203 ms; why a fault cost about 20 us there is not established). From 128 KiB on
# (glibc's first mmap threshold): kept from 1 MiB only, a GRU cell's backward at 1 x 1 x 256 x 256 took
# 176 faults a call for its two 768 KiB weight gradients, which malloc mapped afresh every time (480 us
# a call, 250 without). At most KEPT_MAX bytes are kept
# (their pages stay resident); release_buffers frees them. The blocks are traced by tracemalloc in
# NumPy's domain while an array uses them, as NumPy's own memory is. Everything here runs under the GIL.
# The bound is a C constant: a block can die at interpreter exit after this module's globals were
# cleared (an array held by a function that some module keeps), when a Python global reads as None.
cdef Py_ssize_t _KEPT_MAX = 256 << 20
KEPT_MAX = _KEPT_MAX

cdef extern from "Python.h":
    int PyTraceMalloc_Track(unsigned int domain, size_t ptr, size_t size)
    int PyTraceMalloc_Untrack(unsigned int domain, size_t ptr)

cdef extern from "stdlib.h" nogil:
    int posix_memalign(void **memptr, size_t alignment, size_t size)
    void free(void *ptr)

cdef dict _kept = {}          # block bytes -> addresses of kept blocks of that size
cdef Py_ssize_t _kept_bytes = 0


cdef class _Block:
    """The memory under one array (the array's base): kept, or freed, when the array and every view of
    it are gone."""
    cdef size_t addr
    cdef Py_ssize_t nbytes

    def __dealloc__(self):
        global _kept_bytes
        PyTraceMalloc_Untrack(NUMPY_DOMAIN, self.addr)
        if _kept is not None and _kept_bytes + self.nbytes <= _KEPT_MAX:     # (None: at interpreter exit)
            _kept.setdefault(self.nbytes, []).append(self.addr)
            _kept_bytes += self.nbytes
        else:
            free(<void *>self.addr)


cdef object _kept_array(shape, dtype, Py_ssize_t nbytes):
    """An uninitialised C-contiguous array of `shape` and `dtype` (nbytes in all) on a kept block, or a
    new one (page-aligned, its size rounded up to whole pages so that more sizes match)."""
    global _kept_bytes
    cdef cnp.npy_intp dims[8]
    cdef int nd = len(shape), i
    if nd > 8:
        raise ValueError("fastrnn: arrays of at most 8 dimensions")
    for i in range(nd):
        dims[i] = shape[i]
    cdef Py_ssize_t size = (nbytes + PAGE - 1) // PAGE * PAGE
    cdef void *p = NULL
    cdef size_t addr
    free_list = _kept.get(size)
    if free_list:
        addr = free_list.pop()
        _kept_bytes -= size
    else:
        if posix_memalign(&p, PAGE, size) != 0:
            raise MemoryError(f"fastrnn: cannot allocate {size} bytes for an array")
        addr = <size_t>p
    PyTraceMalloc_Track(NUMPY_DOMAIN, addr, size)
    cdef _Block block = _Block.__new__(_Block)
    block.addr, block.nbytes = addr, size
    cdef cnp.ndarray arr = cnp.PyArray_SimpleNewFromData(nd, dims, dtype.num, <void *>addr)
    cnp.set_array_base(arr, block)
    return arr


def release_kept():
    """Free the kept blocks (those no array uses)."""
    global _kept_bytes
    for addrs in _kept.values():
        for addr in addrs:
            free(<void *><size_t>addr)
    _kept.clear()
    _kept_bytes = 0


def kept_bytes():
    """Bytes of the blocks kept for the next arrays."""
    return _kept_bytes


def release_buffers():
    """Free the C work buffers of the calling thread and of the OpenMP workers it started."""
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
# One body per kernel over the `floating` type: the float32 and float64 entry points of fastrnn.h.

cdef int _rnn_forward(floating **p, const fr_layer *L, bint use_blas) noexcept nogil:
    if floating is float:
        return fr_rnn_forward_f32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], L,
                                  <fr_gemm_f32>sgemm if use_blas else NULL)
    else:
        return fr_rnn_forward_f64(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], L,
                                  <fr_gemm_f64>dgemm if use_blas else NULL)


cdef int _rnn_backward(floating **p, const fr_layer *L, bint use_blas) noexcept nogil:
    if floating is float:
        return fr_rnn_backward_f32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11],
                                   p[12], p[13], L, <fr_gemm_f32>sgemm if use_blas else NULL)
    else:
        return fr_rnn_backward_f64(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11],
                                   p[12], p[13], L, <fr_gemm_f64>dgemm if use_blas else NULL)


cdef int _gru_forward(floating **p, const fr_layer *L, bint use_blas) noexcept nogil:
    if floating is float:
        return fr_gru_forward_f32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], L,
                                  <fr_gemm_f32>sgemm if use_blas else NULL)
    else:
        return fr_gru_forward_f64(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], L,
                                  <fr_gemm_f64>dgemm if use_blas else NULL)


cdef int _gru_backward(floating **p, const fr_layer *L, bint use_blas) noexcept nogil:
    if floating is float:
        return fr_gru_backward_f32(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11],
                                   p[12], p[13], p[14], L, <fr_gemm_f32>sgemm if use_blas else NULL)
    else:
        return fr_gru_backward_f64(p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10], p[11],
                                   p[12], p[13], p[14], L, <fr_gemm_f64>dgemm if use_blas else NULL)


cdef enum Kernel:
    RNN_FORWARD, RNN_BACKWARD, GRU_FORWARD, GRU_BACKWARD


cdef int _run(Kernel k, void **p, const fr_layer *L, bint f32, bint use_blas) noexcept nogil:
    if k == RNN_FORWARD:
        return _rnn_forward(<float **>p, L, use_blas) if f32 else _rnn_forward(<double **>p, L, use_blas)
    if k == RNN_BACKWARD:
        return _rnn_backward(<float **>p, L, use_blas) if f32 else _rnn_backward(<double **>p, L, use_blas)
    if k == GRU_FORWARD:
        return _gru_forward(<float **>p, L, use_blas) if f32 else _gru_forward(<double **>p, L, use_blas)
    return _gru_backward(<float **>p, L, use_blas) if f32 else _gru_backward(<double **>p, L, use_blas)


cdef _call(Kernel k, str what, tuple arrays, tuple sizes, int nout, int dtype_from, lengths, int64_t T, int64_t B,
           int64_t I, int64_t H, int variant, int reverse, int nt, bint use_blas, bint overwrite=False):
    """Check the arrays (_pointers), then run kernel k without the GIL; raise on its error code.
    `overwrite`: a backward writes its weight and bias gradients instead of adding into them."""
    cdef void *p[MAXBUF]
    cdef int rc, tn = _dtype_num(arrays[dtype_from])
    _pointers(p, arrays, sizes, nout, tn)
    cdef fr_layer L
    L.T, L.B, L.I, L.H = T, B, I, H
    L.lengths = _lengths_ptr(lengths, B, T)
    L.reverse, L.variant, L.nthreads, L.overwrite = reverse, variant, nt, overwrite
    if k == RNN_BACKWARD and p[6] == p[7] and p[6] != NULL and (L.lengths != NULL or reverse):
        raise ValueError("fastrnn: dgh and dgx may be one buffer only without lengths and reverse")
    with nogil:
        rc = _run(k, p, &L, tn == cnp.NPY_FLOAT32, use_blas)
    _check(rc, what)


def _rnn_fwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu, int reverse, int nt,
             bint use_blas):
    """arrays: out, h_n, states, xproj (written), x, h0, w_ih, w_hh, b_ih, b_hh."""
    cdef bint kept = cnp.PyArray_SIZE(arrays[2]) > 0
    _call(RNN_FORWARD, "rnn_forward", arrays,
          (T * B * H, B * H, _kept_size(kept, (T + 1) * B * H), T * B * H, T * B * I, B * H, H * I, H * H, H, H),
          4, 4, lengths, T, B, I, H, relu, reverse, nt, use_blas)


cdef bint _shared_pregrads(tuple arrays, lengths, int reverse, str what) except -1:
    """Whether a backward's dgx (arrays[7]) is its dgh (arrays[6]): allowed only where steps and times
    coincide (csrc/fastrnn.h)."""
    cdef bint shared = arrays[6] is arrays[7]
    if shared and (lengths is not None or reverse):
        raise ValueError(f"{what}: dgx may be dgh only without lengths and reverse")
    return shared


def _rnn_bwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu, int reverse, int nt,
             bint use_blas, bint overwrite=False):
    """arrays: dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx (written), d_out, d_hn, x, states, w_ih, w_hh.
    dgx may be dgh (fastrnn.h). The weight and bias gradients are added into, or with `overwrite`
    written (their values on entry not read)."""
    _shared_pregrads(arrays, lengths, reverse, "rnn_backward")
    _call(RNN_BACKWARD, "rnn_backward", arrays,
          (T * B * I, B * H, H * I, H * H, H, H, T * B * H, T * B * H, T * B * H, B * H, T * B * I, (T + 1) * B * H,
           H * I, H * H), 8, 10, lengths, T, B, I, H, relu, reverse, nt, use_blas, overwrite)


def _gru_fwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int reset_after, int reverse,
             int nt, bint use_blas):
    """arrays: out, h_n, states, gates, xproj (written), x, h0, w_ih, w_hh, b_ih, b_hh."""
    cdef bint kept = cnp.PyArray_SIZE(arrays[2]) > 0
    _call(GRU_FORWARD, "gru_forward", arrays,
          (T * B * H, B * H, _kept_size(kept, (T + 1) * B * H), _kept_size(kept, T * B * 4 * H), T * B * 3 * H,
           T * B * I, B * H, 3 * H * I, 3 * H * H, 3 * H, 3 * H), 5, 5, lengths, T, B, I, H, reset_after, reverse,
          nt, use_blas)


def _gru_bwd(tuple arrays, lengths, int64_t T, int64_t B, int64_t I, int64_t H, int reset_after, int reverse,
             int nt, bint use_blas, bint overwrite=False):
    """arrays: dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx (written), d_out, d_hn, x, states, gates,
    w_ih, w_hh. dgx may be dgh (fastrnn.h): then, with reset_after, T * B * 4H values. The weight and
    bias gradients are added into, or with `overwrite` written."""
    cdef int64_t G = 4 if _shared_pregrads(arrays, lengths, reverse, "gru_backward") and reset_after else 3
    _call(GRU_BACKWARD, "gru_backward", arrays,
          (T * B * I, B * H, 3 * H * I, 3 * H * H, 3 * H, 3 * H, T * B * G * H, T * B * G * H, T * B * H, B * H,
           T * B * I, (T + 1) * B * H, T * B * 4 * H, 3 * H * I, 3 * H * H), 8, 10, lengths, T, B, I, H,
          reset_after, reverse, nt, use_blas, overwrite)
