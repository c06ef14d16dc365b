/* The arithmetic ceiling of this machine and how close fastrnn's own GEMM comes to it, in C, with no
 * Python in the timed code. Built and run by `python -m benches.gemm` (see there), which adds
 * OpenBLAS (NumPy's matmul) on the same shapes.
 *
 *   gemm peak THREADS                   float32 FMA throughput of independent register-only chains,
 *                                       for each vector width the build allows: GFLOPS, all threads
 *   gemm par THREADS M N K TA TB REPS   par_gemm (csrc/gemm.h) on C[M,N] = A B, A transposed when
 *                                       TA is 1 (as the weight gradients), B when TB is 1 (as w_ih^T
 *                                       in the input projection): best seconds of REPS
 *   gemm step THREADS H G STEPS REPS    the time loop of a batch of one (B = 1): each thread packs its
 *                                       slice of G x H recurrent weights (a G H x H w_hh, sliced as
 *                                       the kernels slice it), then STEPS steps of packed_gemm on the
 *                                       state, each thread writing its units of the next state and
 *                                       meeting the others at the loop's barrier; and the same loop
 *                                       with the product replaced by one plain read of the thread's
 *                                       packed weights (one stream, no broadcast): what a step
 *                                       cannot beat where they stay. Best seconds a step of REPS each
 *
 * Each prints one line of JSON. Built with csrc/gemm.c and csrc/runtime.c, for one level (-DFR_LEVEL
 * and that level's flags, as setup.py compiles the extension's kernels; -DFR_DOUBLE=0).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "gemm.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

/* NCHAIN independent accumulators of W floats each, ITERS fused multiply-adds on each: the FMA units
 * never wait on a result. Returns flops per second of the calling thread. */
#define NCHAIN 12
#define PEAK_KERNEL(W)                                                                                 \
    static double peak_##W(long iters)                                                                 \
    {                                                                                                  \
        typedef float V __attribute__((vector_size(W * 4)));                                           \
        V acc[NCHAIN], a, b;                                                                           \
        for (int i = 0; i < W; i++) a[i] = 1.0f + 1e-7f * i, b[i] = 1e-7f;                             \
        for (int c = 0; c < NCHAIN; c++) acc[c] = b * (float)c;                                        \
        double t0 = now();                                                                             \
        for (long it = 0; it < iters; it++) {                                                          \
            for (int c = 0; c < NCHAIN; c++) acc[c] = acc[c] * a + b;                                  \
            __asm__ volatile("" : "+x"(a));                                                            \
        }                                                                                              \
        double dt = now() - t0;                                                                        \
        float sink = 0;                                                                                \
        for (int c = 0; c < NCHAIN; c++) sink += acc[c][0];                                            \
        __asm__ volatile("" ::"x"(sink));                                                              \
        return 2.0 * W * NCHAIN * (double)iters / dt;                                                  \
    }
PEAK_KERNEL(4)
#if defined(__AVX__)
PEAK_KERNEL(8)
#endif
#if defined(__AVX512F__)
PEAK_KERNEL(16)
#endif

static double peak_all(int threads, int width)
{
    double total = 0;
#pragma omp parallel num_threads(threads) reduction(+ : total)
    {
        double best = 0;
        for (int rep = 0; rep < 5; rep++) {
            double f = 0;
#if defined(__AVX512F__)
            if (width == 16) f = peak_16(20000000);
#endif
#if defined(__AVX__)
            if (width == 8) f = peak_8(20000000);
#endif
            if (width == 4) f = peak_4(20000000);
            if (f > best) best = f;
        }
        total += best;
    }
    return total;
}

/* The sum of the first n floats in whole blocks of 8 vectors (the rest, under 8 vectors, unread) as 8
 * independent vector chains: one sequential read, first to last, or with `rev` last to first (as
 * packed_gemm sweeps its panels every other step). */
static float read_all(const float *p, size_t n, int rev)
{
    typedef float V __attribute__((vector_size(FR_VBYTES)));
    enum { W = FR_VBYTES / 4 };
    V acc[8] = {{0}};
    for (size_t b = 0; b < n / (8 * W); b++) {
        const float *q = p + (rev ? n / (8 * W) - 1 - b : b) * 8 * W;
        for (int u = 0; u < 8; u++) acc[u] += *(const V *)(q + u * W);
    }
    V s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    float t = 0;
    for (int l = 0; l < W; l++) t += s[l];
    return t;
}

static void fill(float *p, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (float)((seed >> 9) & 0xffff) / 65536.0f - 0.5f;
    }
}

/* gemm step (see the top): best seconds a step of the loop with packed_gemm ("step") and with a plain
 * read of the same packed weights ("read"); every column of the product checked against a plain sum. */
static int step_main(int threads, int H, int G, int steps, int reps)
{
    if (threads < 1 || H < 1 || G < 1 || steps < 1 || reps < 1) {
        fprintf(stderr, "gemm step: threads, sizes, steps and reps must be positive\n");
        return 2;
    }
    float *w = fr_alloc(sizeof(float) * (size_t)G * H * H), *h = fr_alloc(sizeof(float) * 2 * (size_t)H);
    if (!w || !h) {
        fprintf(stderr, "gemm step: out of memory\n");
        return 1;
    }
    fill(w, (size_t)G * H * H, 3);
    fill(h, 2 * (size_t)H, 4);
    double best[2] = {1e30, 1e30}, err = 0;
    int failed = 0;
    size_t bytes = 0;          /* the packed bytes of all threads, and how many threads hold some */
    int busy = 0;
    fr_barrier_t bar = {0};
    bar.n = threads;
#pragma omp parallel num_threads(threads) reduction(max : err) reduction(+ : bytes, busy)
    {
        int64_t j0, hs;
        fr_slice(H, omp_get_num_threads(), omp_get_thread_num(), UNITS, &j0, &hs);
        const int64_t np = (G * hs + NR - 1) / NR * NR;
        float *P = fr_alloc(sizeof(float) * (size_t)(np * H)), *C = fr_alloc(sizeof(float) * (size_t)np);
        if (!P || !C) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp barrier
        if (!failed && hs > 0) {
            SFX(pack_panels)(P, w, H, G, hs, j0, (size_t)H * H, H, 1, np);
            bytes = sizeof(float) * (size_t)np * H;
            busy = 1;
            SFX(packed_gemm)(1, np, H, h, H, P, C, np, 0);
            for (int64_t c = 0; c < G * hs; c++) {      /* unit j0 + c % hs of group c / hs */
                const float *row = w + ((size_t)(c / hs) * H + j0 + c % hs) * H;
                double ref = 0;
                for (int64_t k = 0; k < H; k++) ref += (double)row[k] * h[k];
                double e = (C[c] - ref) / (1 + H / 100.0);
                err = e > err ? e : -e > err ? -e : err;
            }
        }
        float sink = 0;
        for (int kind = 0; kind < 2; kind++)
            for (int rep = 0; rep < reps && !failed; rep++) {
                int phase = 0, rev = 0;
#pragma omp barrier
                double t0 = now();
                for (int s = 0; s < steps; s++) {
                    const float *cur = h + (size_t)(s & 1) * H;
                    float *next = h + (size_t)(~s & 1) * H;
                    if (hs > 0 && kind == 0) {
                        SFX(packed_gemm)(1, np, H, cur, H, P, C, np, rev);
                        for (int64_t u = 0; u < hs; u++) next[j0 + u] = C[u] * 0.01f;
                    } else if (hs > 0) {
                        sink += read_all(P, (size_t)np * H, rev);
                        next[j0] = cur[j0];
                    }
                    rev ^= 1;
                    fr_barrier_wait(&bar, &phase);
                }
                double dt = (now() - t0) / steps;
#pragma omp barrier
#pragma omp master
                if (dt < best[kind]) best[kind] = dt;
            }
        __asm__ volatile("" ::"x"(sink));
        free(P);
        free(C);
    }
    free(w);
    free(h);
    if (failed) {
        fprintf(stderr, "gemm step: out of memory\n");
        return 1;
    }
    if (err > 1e-3) {
        fprintf(stderr, "gemm step: wrong result (error %g)\n", err);
        return 1;
    }
    printf("{\"threads\": %d, \"H\": %d, \"G\": %d, \"steps\": %d, \"step_seconds\": %.6g, \"read_seconds\": %.6g, "
           "\"bytes_per_thread\": %zu}\n", threads, H, G, steps, best[0], best[1], busy ? bytes / busy : 0);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 3 && !strcmp(argv[1], "peak")) {
        int threads = atoi(argv[2]);
        printf("{\"threads\": %d, \"sse_gflops\": %.2f", threads, peak_all(threads, 4) / 1e9);
#if defined(__AVX__)
        printf(", \"avx2_gflops\": %.2f", peak_all(threads, 8) / 1e9);
#endif
#if defined(__AVX512F__)
        printf(", \"avx512_gflops\": %.2f", peak_all(threads, 16) / 1e9);
#endif
        printf(", \"kernel_vector_bytes\": %d}\n", FR_VBYTES);
        return 0;
    }
    if (argc == 9 && !strcmp(argv[1], "par")) {
        int threads = atoi(argv[2]), M = atoi(argv[3]), N = atoi(argv[4]), K = atoi(argv[5]), ta = atoi(argv[6]);
        int tb = atoi(argv[7]), reps = atoi(argv[8]);
        if (threads < 1 || M < 1 || N < 1 || K < 1 || reps < 1) {
            fprintf(stderr, "gemm par: sizes, threads and reps must be positive\n");
            return 2;
        }
        float *A = fr_alloc(sizeof(float) * (size_t)M * K), *Bm = fr_alloc(sizeof(float) * (size_t)K * N);
        float *C = fr_alloc(sizeof(float) * (size_t)M * N);
        if (!A || !Bm || !C) {
            fprintf(stderr, "gemm par: out of memory\n");
            return 1;
        }
        fill(A, (size_t)M * K, 1);
        fill(Bm, (size_t)K * N, 2);
        /* A(i, k) = A[i + k*M] when transposed (a column of a K x M row-major array), else A[i*K + k] */
        size_t ars = ta ? 1 : (size_t)K, acs = ta ? (size_t)M : 1;
        /* B(k, j) = Bm[k + j*K] when transposed (a row of an N x K row-major array), else Bm[k*N + j] */
        size_t brs = tb ? 1 : (size_t)N, bcs = tb ? (size_t)K : 1;
        double best = 1e30;
        int failed = 0;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = now();
#pragma omp parallel num_threads(threads)
            {
                unsigned csr = fr_ftz_on();
                float *P = fr_buffer(FR_BUF_PACK, sizeof(float) * SFX(pack_size)());
                if (!P) {
#pragma omp atomic write
                    failed = 1;
                } else {
                    SFX(par_gemm)(M, N, K, A, ars, acs, Bm, brs, bcs, C, N, 0, P);
                }
                fr_ftz_restore(csr);
            }
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        if (failed) {
            fprintf(stderr, "gemm par: out of memory\n");
            return 1;
        }
        /* one element checked against a plain sum, so that a broken kernel cannot report a time */
        int i = M / 2, j = N / 3;
        double ref = 0;
        for (int k = 0; k < K; k++) ref += (double)A[i * ars + k * acs] * Bm[k * brs + j * bcs];
        double err = C[(size_t)i * N + j] - ref;
        if (err > 1e-3 * (1 + K / 100.0) || err < -1e-3 * (1 + K / 100.0)) {
            fprintf(stderr, "gemm par: wrong result %g vs %g\n", (double)C[(size_t)i * N + j], ref);
            return 1;
        }
        printf("{\"threads\": %d, \"M\": %d, \"N\": %d, \"K\": %d, \"ta\": %d, \"tb\": %d, \"seconds\": %.6g}\n", threads,
               M, N, K, ta, tb, best);
        return 0;
    }
    if (argc == 7 && !strcmp(argv[1], "step"))
        return step_main(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6]));
    fprintf(stderr, "usage: gemm peak THREADS | gemm par THREADS M N K TA TB REPS | gemm step THREADS H G STEPS REPS\n");
    return 2;
}
