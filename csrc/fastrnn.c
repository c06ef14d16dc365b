/* fastrnn kernels: the shared helpers, then kernels_impl.h instantiated for float and double. */
#include "fastrnn.h"

#include <limits.h>
#include <stdint.h>
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

/* 64-byte aligned allocation; NULL on failure (never for a zero size) or when `bytes` overflows. */
static void *fr_alloc(size_t bytes)
{
    if (bytes > SIZE_MAX - 64) return NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

/* memcpy / memset of `bytes` that may be 0, where the pointers of empty buffers may be NULL. */
static inline void fr_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}
static inline void fr_zero(void *dst, size_t bytes)
{
    if (bytes) memset(dst, 0, bytes);
}

/* The work buffers of a call (bias, packed weights, one step's product) are kept per thread and
 * reused by the next call on that thread, grown when a call needs more: allocating and faulting in
 * fresh pages on every call costs more than a short call's arithmetic. They hang off a POSIX
 * thread-specific key whose destructor frees them when the thread exits (a Python thread, or the
 * OpenMP workers that libgomp starts for it and stops with it), so short-lived threads leave nothing
 * behind; fr_release_buffers frees them on demand. */
enum { FR_BUF_BIAS, FR_BUF_PACK, FR_BUF_P1, FR_BUF_P2, FR_BUF_S, FR_BUF_STATE, FR_BUF_GATES, FR_NBUF };
typedef struct {
    void *p[FR_NBUF];
    size_t bytes[FR_NBUF];
    int team;               /* the largest team this thread has started (see fr_release_buffers) */
} fr_thread_buffers;

static void fr_free_buffers(void *arg)
{
    fr_thread_buffers *tb = (fr_thread_buffers *)arg;
    if (!tb) return;
    for (int i = 0; i < FR_NBUF; i++) free(tb->p[i]);
    free(tb);
}

#include <pthread.h>
static pthread_key_t fr_key;
static int fr_key_ok;
static pthread_once_t fr_key_once = PTHREAD_ONCE_INIT;
static void fr_make_key(void) { fr_key_ok = pthread_key_create(&fr_key, fr_free_buffers) == 0; }

/* This thread's buffers (created on first use); NULL when out of memory. */
static fr_thread_buffers *fr_mine(int create)
{
    pthread_once(&fr_key_once, fr_make_key);
    if (!fr_key_ok) return NULL;
    fr_thread_buffers *tb = (fr_thread_buffers *)pthread_getspecific(fr_key);
    if (!tb && create) {
        tb = (fr_thread_buffers *)calloc(1, sizeof *tb);
        if (tb && pthread_setspecific(fr_key, tb) != 0) {
            free(tb);
            tb = NULL;
        }
    }
    return tb;
}

static void *fr_buffer(int slot, size_t bytes)
{
    fr_thread_buffers *tb = fr_mine(1);
    if (!tb) return NULL;
    if (!tb->p[slot] || tb->bytes[slot] < bytes) {
        free(tb->p[slot]);
        tb->p[slot] = fr_alloc(bytes);
        tb->bytes[slot] = tb->p[slot] ? bytes : 0;
    }
    return tb->p[slot];
}

/* The team size of a parallel region about to start from this thread, remembered so that
 * fr_release_buffers reaches every worker that may hold buffers. */
static int fr_team(int n)
{
    fr_thread_buffers *tb = fr_mine(1);
    if (tb && n > tb->team) tb->team = n;
    return n;
}

static void fr_release_mine(void)
{
    fr_thread_buffers *tb = fr_mine(0);
    if (!tb) return;
    for (int i = 0; i < FR_NBUF; i++) {
        free(tb->p[i]);
        tb->p[i] = NULL;
        tb->bytes[i] = 0;
    }
}

void fr_release_buffers(void)
{
    fr_thread_buffers *tb = fr_mine(0);
    int team = tb ? tb->team : 1;
#ifdef _OPENMP
    if (team > 1) {
#pragma omp parallel num_threads(team)
        fr_release_mine();
    }
#endif
    (void)team;
    fr_release_mine();
}

/* ---- fingerprints: has a buffer changed between a forward and its backward? ------------------------
 * A Fletcher-style checksum over 64-bit words, eight lanes wide: per lane, s1 = sum of the words and
 * s2 = sum of the running s1 (mod 2^64), i.e. each word weighted by its distance from the end of the
 * block. Every single change of a word changes s1; moving or swapping words changes s2. Two vector
 * additions per 64 bytes, so it runs at the speed the cache delivers. The bytes are cut into fixed
 * blocks of FR_FP_BLOCK, summed independently (in parallel, over all the buffers of one call), mixed
 * with their index and added, so the result does not depend on the thread count. Not a
 * cryptographic hash: it detects changes, it does not resist an adversary. */
#define FR_FP_BLOCK ((int64_t)1 << 16)
#define FR_FP_PRIME 0x9E3779B97F4A7C15ull
static inline uint64_t fr_mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xFF51AFD7ED558CCDull;
    h ^= h >> 33;
    h *= 0xC4CEB9FE1A85EC53ull;
    return h ^ (h >> 33);
}

/* Eight 64-bit lanes as one vector (SSE2 up to AVX-512: the compiler splits it as the target needs). */
typedef uint64_t fr_u64x8 __attribute__((vector_size(64)));

/* The fingerprint of block `block` (its first `bytes` bytes at p, bytes <= FR_FP_BLOCK). */
static uint64_t fr_fp_block(const unsigned char *p, int64_t bytes, uint64_t block)
{
    fr_u64x8 s1 = {0}, s2 = {0};
    const int64_t nstripes = bytes / 64;
    for (int64_t s = 0; s < nstripes; s++) {
        fr_u64x8 w;
        memcpy(&w, p + s * 64, 64);
        s1 += w;
        s2 += s1;
    }
    uint64_t tail[8] = {0};
    fr_copy(tail, p + nstripes * 64, (size_t)(bytes - nstripes * 64));
    uint64_t h = fr_mix(block + 1) ^ (uint64_t)bytes;
    for (int l = 0; l < 8; l++) h = fr_mix(fr_mix(h ^ s1[l]) ^ s2[l] ^ (tail[l] * FR_FP_PRIME + (uint64_t)l));
    return h;
}

static inline int64_t fr_fp_nblocks(int64_t bytes) { return bytes > 0 ? (bytes + FR_FP_BLOCK - 1) / FR_FP_BLOCK : 0; }

void fr_fingerprints(uint64_t *out, const void *const *data, const int64_t *bytes, int n, int nthreads)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++) {
        out[i] = 0;
        total += fr_fp_nblocks(bytes[i]);
    }
    int nt = nthreads < 1 ? 1 : nthreads;
    if (nt > total / 4) nt = (int)(total / 4);     /* a thread is worth four blocks at least */
    if (nt < 1) nt = 1;
#pragma omp parallel num_threads(fr_team(nt)) if (nt > 1)
    {
        /* block k of the concatenation is block j of buffer i; the sums are commutative, so the order
           in which threads add does not matter */
        int i = 0;
        int64_t first = 0;        /* index of buffer i's first block in the concatenation */
#pragma omp for schedule(static)
        for (int64_t k = 0; k < total; k++) {
            while (k - first >= fr_fp_nblocks(bytes[i])) first += fr_fp_nblocks(bytes[i++]);
            const int64_t j = k - first, nb = bytes[i] - j * FR_FP_BLOCK;
            uint64_t h = fr_fp_block((const unsigned char *)data[i] + j * FR_FP_BLOCK,
                                     nb < FR_FP_BLOCK ? nb : FR_FP_BLOCK, (uint64_t)j);
#pragma omp atomic
            out[i] += h;
        }
    }
    for (int b = 0; b < n; b++) out[b] = fr_mix(out[b] ^ (uint64_t)bytes[b] * FR_FP_PRIME);
}

/* Time index read by sequence b at step s, or -1 when the sequence is already over (fastrnn.h). */
static inline int64_t fr_time_index(int64_t s, int64_t b, int64_t T, const int64_t *lengths, int reverse)
{
    int64_t len = lengths ? lengths[b] : T;
    if (s >= len) return -1;
    return reverse ? len - 1 - s : s;
}

/* Thread `tid` of `nt` owns hidden units [*j0, *j0 + *hs): whole chunks of `vl` units, spread evenly. */
static void fr_slice(int64_t H, int nt, int tid, int64_t vl, int64_t *j0, int64_t *hs)
{
    int64_t chunks = (H + vl - 1) / vl;
    int64_t c0 = chunks * tid / nt, c1 = chunks * (tid + 1) / nt;
    int64_t a = c0 * vl, e = c1 * vl < H ? c1 * vl : H;
    *j0 = a < H ? a : H;
    *hs = e > *j0 ? e - *j0 : 0;
}

/* Threads worth using for the time loop: at most one per chunk of units, enough recurrent work per
 * step (2 B G H K flops) for each to outweigh a barrier, and one for a call too short to share. */
#define FR_MIN_FLOPS_PER_THREAD 65536.0
#define FR_MIN_FLOPS_PER_CALL 2e6
static int fr_loop_threads(int nthreads, int64_t T, int64_t B, int64_t H, int64_t K, int64_t G, int64_t vl)
{
    double flops = 2.0 * (double)B * (double)G * (double)H * (double)K;
    double by_work = flops / FR_MIN_FLOPS_PER_THREAD;
    if (flops * (double)T < FR_MIN_FLOPS_PER_CALL) by_work = 1;   /* a short call: waking threads costs more */
    int64_t by_units = (H + vl - 1) / vl;
    int n = nthreads;
    if (n > by_work) n = (int)by_work;
    if (n > by_units) n = (int)by_units;
    return n < 1 ? 1 : n;
}

/* Threads for the whole call: those of the time loop, or more when the big products (2 T B GH I flops)
 * give each at least FR_MIN_FLOPS_PER_GEMM_THREAD of work. */
#define FR_MIN_FLOPS_PER_GEMM_THREAD 2e6
static int fr_team_threads(int nthreads, int nloop, int64_t T, int64_t B, int64_t I, int64_t GH)
{
    double flops = 2.0 * (double)T * (double)B * (double)GH * (double)I;
    double by_work = flops / FR_MIN_FLOPS_PER_GEMM_THREAD;
    int n = nthreads;
    if (n > by_work) n = (int)by_work;
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
