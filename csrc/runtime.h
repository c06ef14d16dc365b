/* What every kernel shares, whatever its instruction set: allocation and per-thread work buffers, the
 * time loop's barrier, thread counts and slices, denormals, the step -> time map, and the CPU
 * features a level needs. Defined in runtime.c, compiled once for the baseline (the levels' choice
 * is dispatch.c's). Internal: not part of the extension's API. */
#ifndef FASTRNN_RUNTIME_H
#define FASTRNN_RUNTIME_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "fastrnn.h"

#ifdef _OPENMP
#include <omp.h>
#else
static inline int omp_get_thread_num(void) { return 0; }
static inline int omp_get_num_threads(void) { return 1; }
#endif

/* ---- memory ------------------------------------------------------------------------------------ */

/* 64-byte aligned allocation, freed with free(); NULL on failure or when `bytes` overflows. */
void *fr_alloc(size_t bytes);

/* memcpy / memset of `bytes` that may be 0, where the pointers of empty buffers may be NULL. */
static inline void fr_copy(void *dst, const void *src, size_t bytes)
{
    if (bytes) memcpy(dst, src, bytes);
}
static inline void fr_zero(void *dst, size_t bytes)
{
    if (bytes) memset(dst, 0, bytes);
}

/* The work buffers of a call, one of each slot per thread, kept for that thread's next call and grown
 * when a call needs more; freed when the thread exits, or by fr_release_buffers (fastrnn.h). */
enum { FR_BUF_BIAS, FR_BUF_PACK, FR_BUF_P1, FR_BUF_P2, FR_BUF_P3, FR_BUF_S, FR_BUF_XS, FR_BUF_STATE, FR_BUF_GATES,
       FR_BUF_DB, FR_NBUF };
/* The calling thread's buffer `slot` of at least `bytes` bytes (contents undefined); NULL when out of
 * memory. Owned by the runtime: never freed by the caller. */
void *fr_buffer(int slot, size_t bytes);

/* ---- threads ----------------------------------------------------------------------------------- */

/* `n`, the team size of a parallel region about to start from this thread, remembered so that
 * fr_release_buffers reaches every worker that may hold buffers. */
int fr_team(int n);

/* The once-per-step barrier of a time loop's `n` threads (n set by thread 0 before the loop, after
 * which an `omp barrier` publishes it); every thread keeps its own phase count, starting at 0. */
typedef struct {
    atomic_int arrived;  /* threads at the barrier in this phase */
    atomic_int phase;    /* number of completed barriers */
    int n;               /* team size */
} fr_barrier_t;
void fr_barrier_wait(fr_barrier_t *bar, int *my_phase);

/* Thread `tid` of `nt` owns hidden units [*j0, *j0 + *hs): whole chunks of `vl` units, spread evenly. */
void fr_slice(int64_t H, int nt, int tid, int64_t vl, int64_t *j0, int64_t *hs);

/* Threads worth using for the time loop of the call L (at most L->nthreads): one per chunk of `vl`
 * units at most, and enough recurrent work per step (2 B G H H flops, G groups) for each to outweigh
 * a barrier. */
int fr_loop_threads(const fr_layer *L, int64_t G, int64_t vl);

/* Threads for the whole call's parallel region (passed through fr_team): those of the time loop, or
 * more when the region also runs the big products (`blas` 0) and those (2 T B GH I flops, GH = G H)
 * give each enough work. */
int fr_team_threads(const fr_layer *L, int nloop, int blas, int64_t GH);

/* Flush denormals to zero in the calling thread (x86 MXCSR FTZ and DAZ; nothing elsewhere); returns
 * the previous state for fr_ftz_restore. */
unsigned fr_ftz_on(void);
void fr_ftz_restore(unsigned csr);

/* ---- instruction sets ---------------------------------------------------------------------------
 * What a level's code needs of the CPU, as bits: each compile of the kernels records those its target
 * flags enabled (level.c: fr_needs_<level>), and dispatch.c chooses a level only
 * when the CPU has all of them. */
enum {
    FR_CPU_SSE3 = 1 << 0, FR_CPU_SSSE3 = 1 << 1, FR_CPU_SSE41 = 1 << 2, FR_CPU_SSE42 = 1 << 3,
    FR_CPU_POPCNT = 1 << 4, FR_CPU_AVX = 1 << 5, FR_CPU_AVX2 = 1 << 6, FR_CPU_FMA = 1 << 7,
    FR_CPU_F16C = 1 << 8, FR_CPU_BMI = 1 << 9, FR_CPU_BMI2 = 1 << 10, FR_CPU_AVX512F = 1 << 11,
    FR_CPU_AVX512VL = 1 << 12, FR_CPU_AVX512BW = 1 << 13, FR_CPU_AVX512DQ = 1 << 14,
    FR_CPU_AVX512CD = 1 << 15, FR_CPU_AVX512VNNI = 1 << 16, FR_CPU_AVX512BF16 = 1 << 17,
    FR_CPU_AVX512FP16 = 1 << 18, FR_CPU_AVX512IFMA = 1 << 19, FR_CPU_AVX512VBMI = 1 << 20,
};

/* ---- sequences --------------------------------------------------------------------------------- */

/* Time index read by sequence b at step s, or -1 when the sequence is already over (fastrnn.h). */
static inline int64_t fr_time_index(int64_t s, int64_t b, int64_t T, const int64_t *lengths, int reverse)
{
    int64_t len = lengths ? lengths[b] : T;
    if (s >= len) return -1;
    return reverse ? len - 1 - s : s;
}

#endif
