/* The runtime of the kernels (runtime.h): allocation and per-thread buffers, the time loop's barrier,
 * thread counts, denormals. Compiled once, for the baseline (it runs before a level is chosen). */
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fastrnn.h"
#include "runtime.h"

/* ---- memory ------------------------------------------------------------------------------------ */

void *fr_alloc(size_t bytes)
{
    if (bytes > SIZE_MAX - 64) return NULL;
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

/* The work buffers of a call (bias, packed weights, one step's product) are kept per thread and
 * reused by the next call on that thread, grown when a call needs more: allocating and faulting in
 * fresh pages on every call costs more than a short call's arithmetic. They hang off a POSIX
 * thread-specific key whose destructor frees them when the thread exits (a Python thread, or the
 * OpenMP workers that libgomp starts for it and stops with it), so short-lived threads leave nothing
 * behind; fr_release_buffers frees them on demand. */
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

void *fr_buffer(int slot, size_t bytes)
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
int fr_team(int n)
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

/* ---- threads and denormals --------------------------------------------------------------------- */

/* The once-per-step barrier of the time loop: spin a little, then yield the core. OpenMP's own barrier
 * spins for a long time before sleeping, which is fine on an idle machine but ruinous when another
 * process holds one of our cores (the step stalls until the scheduler comes back to us). */
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#define fr_cpu_relax() _mm_pause()
#else
#define fr_cpu_relax() ((void)0)
#endif
#define FR_SPINS 256
void fr_barrier_wait(fr_barrier_t *bar, int *my_phase)
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

void fr_slice(int64_t H, int nt, int tid, int64_t vl, int64_t *j0, int64_t *hs)
{
    int64_t chunks = (H + vl - 1) / vl;
    int64_t c0 = chunks * tid / nt, c1 = chunks * (tid + 1) / nt;
    int64_t a = c0 * vl, e = c1 * vl < H ? c1 * vl : H;
    *j0 = a < H ? a : H;
    *hs = e > *j0 ? e - *j0 : 0;
}

/* Threads worth using for the time loop: at most one per chunk of units, enough recurrent work per
 * step (2 B G H K flops) for each to outweigh a barrier, and one for a call too short to share
 * (measured, a GRU step at T = 1, B = 1, I = H = 256, 0.8 Mflop: one thread 50 us, two 19 us; the
 * limit was 2e6 before). */
#define FR_MIN_FLOPS_PER_THREAD 65536.0
#define FR_MIN_FLOPS_PER_CALL 2e5
int fr_loop_threads(const fr_layer *L, int64_t G, int64_t vl)
{
    const int64_t T = L->T, H = L->H;
    const int nthreads = L->nthreads;
    double flops = 2.0 * (double)L->B * (double)G * (double)H * (double)H;
    double by_work = flops / FR_MIN_FLOPS_PER_THREAD;
    if (flops * (double)T < FR_MIN_FLOPS_PER_CALL) by_work = 1;   /* a short call: waking threads costs more */
    int64_t by_units = (H + vl - 1) / vl;
    int n = nthreads;
    if (n > by_work) n = (int)by_work;
    if (n > by_units) n = (int)by_units;
    return n < 1 ? 1 : n;
}

/* Threads for the whole call: those of the time loop, or, when the region also runs the big products
 * (no BLAS), more where those (2 T B GH I flops) give each at least FR_MIN_FLOPS_PER_GEMM_THREAD of
 * work; remembered by fr_team. */
#define FR_MIN_FLOPS_PER_GEMM_THREAD 2e6
int fr_team_threads(const fr_layer *L, int nloop, int blas, int64_t GH)
{
    double flops = 2.0 * (double)L->T * (double)L->B * (double)GH * (double)L->I;
    double by_work = flops / FR_MIN_FLOPS_PER_GEMM_THREAD;
    int n = L->nthreads;
    if (n > by_work) n = (int)by_work;
    return fr_team(blas || n < nloop ? nloop : n);
}

#if defined(__SSE__) || defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h>
/* Flush denormals to zero (FTZ) and treat denormal inputs as zero (DAZ) in this thread; returns the
 * previous control word for fr_ftz_restore. */
unsigned fr_ftz_on(void)
{
    unsigned csr = _mm_getcsr();
    _mm_setcsr(csr | 0x8040);
    return csr;
}
void fr_ftz_restore(unsigned csr) { _mm_setcsr(csr); }
#else
unsigned fr_ftz_on(void) { return 0; }
void fr_ftz_restore(unsigned csr) { (void)csr; }
#endif

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
