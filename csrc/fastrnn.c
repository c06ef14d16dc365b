/* fastrnn kernels: the shared helpers, then kernels_impl.h instantiated for float and double. */
#include "fastrnn.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_thread_num(void) { return 0; }
static int omp_get_num_threads(void) { return 1; }
#endif

#if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
/* Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ) in this thread; returns the
 * previous control word for fr_ftz_restore. */
static unsigned fr_ftz_on(void)
{
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
    return csr;
}
static void fr_ftz_restore(unsigned csr) { _mm_setcsr(csr); }
#else
static unsigned fr_ftz_on(void) { return 0; }
static void fr_ftz_restore(unsigned csr) { (void)csr; }
#endif

/* The once-per-step barrier of the time loop: spin a little, then yield the core. OpenMP's own barrier
 * spins for a long time before sleeping, which is fine on an idle machine but ruinous when another
 * process holds one of our cores (the step stalls until the scheduler comes back to us). */
#include <sched.h>
#include <stdatomic.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define fr_cpu_relax() _mm_pause()
#else
#define fr_cpu_relax() ((void)0)
#endif
#define FR_SPINS 256
typedef struct {
    atomic_int arrived;  /* threads at the barrier in this phase */
    atomic_int phase;    /* number of completed barriers */
    int n;               /* team size */
} fr_barrier_t;

static void fr_barrier_wait(fr_barrier_t *bar, int *my_phase)
{
    int next = ++*my_phase;
    if (bar->n <= 1) return;
    if (atomic_fetch_add_explicit(&bar->arrived, 1, memory_order_acq_rel) == bar->n - 1) {
        atomic_store_explicit(&bar->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&bar->phase, next, memory_order_release);
        return;
    }
    for (int spins = 0; atomic_load_explicit(&bar->phase, memory_order_acquire) != next;) {
        if (spins < FR_SPINS) {
            spins++;
            fr_cpu_relax();
        } else {
            sched_yield();
        }
    }
}

/* Bytes of the kernels' vectors: the widest the build's target has (a -DFR_VBYTES=... in CFLAGS overrides).
 * 512-bit vectors pay even where the FMA units are 256 bits wide (AMD Zen 4): one instruction feeds
 * both, and the micro-kernel's panel loads and broadcasts are half as many per flop. */
#if defined(FR_VBYTES)
#elif defined(__AVX512F__)
#define FR_VBYTES 64
#elif defined(__AVX__)
#define FR_VBYTES 32
#else
#define FR_VBYTES 16
#endif

#include "mathfun.h"

/* 64-byte aligned allocation; NULL on failure (never for a zero size). */
static void *fr_alloc(size_t bytes)
{
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

/* The work buffers of a call (bias, packed weights, one step's product) are kept per thread and
 * reused by the next call on that thread, grown when a call needs more: allocating and faulting in
 * fresh pages on every call costs more than a short call's arithmetic. OpenMP's worker threads live
 * as long as the process, so each keeps the buffers of the largest call it has served. */
enum { FR_BUF_BIAS, FR_BUF_PACK, FR_BUF_P1, FR_BUF_P2, FR_BUF_S, FR_BUF_STATE, FR_BUF_GATES, FR_NBUF };
static _Thread_local struct {
    void *p;
    size_t bytes;
} fr_buffers[FR_NBUF];

static void *fr_buffer(int slot, size_t bytes)
{
    if (!fr_buffers[slot].p || fr_buffers[slot].bytes < bytes) {
        free(fr_buffers[slot].p);
        fr_buffers[slot].p = fr_alloc(bytes);
        fr_buffers[slot].bytes = fr_buffers[slot].p ? bytes : 0;
    }
    return fr_buffers[slot].p;
}

/* Time index read by sequence b at step s, or -1 when the sequence is already over (fastrnn.h). */
static inline int fr_time_index(int s, int b, int T, const int64_t *lengths, int reverse)
{
    int len = lengths ? (int)lengths[b] : T;
    if (s >= len) return -1;
    return reverse ? len - 1 - s : s;
}

/* Thread `tid` of `nt` owns hidden units [*j0, *j0 + *hs): whole chunks of `vl` units, spread evenly. */
static void fr_slice(int H, int nt, int tid, int vl, int *j0, int *hs)
{
    int chunks = (H + vl - 1) / vl;
    int c0 = (int)((long)chunks * tid / nt), c1 = (int)((long)chunks * (tid + 1) / nt);
    int a = c0 * vl, e = c1 * vl < H ? c1 * vl : H;
    *j0 = a < H ? a : H;
    *hs = e > *j0 ? e - *j0 : 0;
}

/* Threads worth using for the time loop: at most one per chunk of units, enough recurrent work per
 * step (2 B G H K flops) for each to outweigh a barrier, and one for a call too short to share. */
#define FR_MIN_FLOPS_PER_THREAD 65536.0
#define FR_MIN_FLOPS_PER_CALL 2e6
static int fr_loop_threads(int nthreads, int T, int B, int H, int K, int G, int vl)
{
    double flops = 2.0 * B * G * (double)H * K;
    int by_work = (int)(flops / FR_MIN_FLOPS_PER_THREAD);
    if (flops * T < FR_MIN_FLOPS_PER_CALL) by_work = 1;   /* a short call: waking threads costs more */
    int by_units = (H + vl - 1) / vl;
    int n = nthreads;
    if (n > by_work) n = by_work;
    if (n > by_units) n = by_units;
    return n < 1 ? 1 : n;
}

/* Threads for the whole call: those of the time loop, or more when the big products (2 T B GH I flops)
 * give each at least FR_MIN_FLOPS_PER_GEMM_THREAD of work. */
#define FR_MIN_FLOPS_PER_GEMM_THREAD 2e6
static int fr_team_threads(int nthreads, int nloop, int T, int B, int I, int GH)
{
    double flops = 2.0 * T * B * (double)GH * I;
    int n = (int)(flops / FR_MIN_FLOPS_PER_GEMM_THREAD);
    if (n > nthreads) n = nthreads;
    return n > nloop ? n : nloop;
}

int fr_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fr_max_threads(void)
{
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

const char *fr_simd(void)
{
#if defined(__AVX512F__) && FR_VBYTES == 64
    return "avx512";
#elif defined(__AVX512F__) && FR_VBYTES == 32
    return "avx512 (kernels use 256-bit vectors)";
#elif defined(__AVX512F__)
    return "avx512 (kernels use 128-bit vectors)";
#elif defined(__AVX2__) && defined(__FMA__)
    return "avx2+fma";
#elif defined(__AVX__)
    return "avx";
#elif defined(__SSE2__)
    return "sse2";
#else
    return "generic";
#endif
}

#define REAL float
#define SFX(name) name##_f32
#define GEMM_T fr_gemm_f32
#define SIGMOID fr_sigmoid_f32
#define TANH fr_tanh_f32
#include "kernels_impl.h"
#undef REAL
#undef SFX
#undef GEMM_T
#undef SIGMOID
#undef TANH

#define REAL double
#define SFX(name) name##_f64
#define GEMM_T fr_gemm_f64
#define SIGMOID fr_sigmoid_f64
#define TANH fr_tanh_f64
#include "kernels_impl.h"
