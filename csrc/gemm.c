/* fastrnn's own GEMM: register-blocked micro-kernels, the packed product of a time loop's step, and
 * the big products shared by the threads of a parallel region (declared, with every argument, in
 * gemm.h). Compiled once per level and type (kernel.h).
 *
 * The step's product C[M, Np] = A[M, K] P runs on weights a thread packed once per call (pack_panels)
 * and keeps in its own cache: MR x NR accumulators stay in registers; the k loop does MR broadcasts,
 * 2 vector loads and 2*MR fused multiply-adds.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"

/* Row-major C[M,N] = alpha op(A) op(B) + beta C through the column-major Fortran gemm, whose sizes
 * are 32-bit ints: M and K are taken in pieces of at most FR_BLAS_MAX (the K pieces add into C), and
 * N and the leading dimensions must fit (FR_ETOOBIG otherwise; checked before anything is written). */
#define FR_BLAS_MAX ((int64_t)INT_MAX)
int SFX(gemm_rm)(GEMM_T gemm, int ta, int tb, int64_t M, int64_t N, int64_t K, REAL alpha, const REAL *A,
                 int64_t lda, const REAL *Bm, int64_t ldb, REAL beta, REAL *C, int64_t ldc)
{
    if (M <= 0 || N <= 0) return FR_OK;
    if (K <= 0) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) C[i * ldc + j] = beta == 0 ? 0 : beta * C[i * ldc + j];
        return FR_OK;
    }
    if (N > FR_BLAS_MAX || lda > FR_BLAS_MAX || ldb > FR_BLAS_MAX || ldc > FR_BLAS_MAX) return FR_ETOOBIG;
    char cta = ta ? 'T' : 'N', ctb = tb ? 'T' : 'N';
    int n = (int)N, ia = (int)lda, ib = (int)ldb, ic = (int)ldc;
    for (int64_t i0 = 0; i0 < M; i0 += FR_BLAS_MAX) {
        int m = (int)(M - i0 < FR_BLAS_MAX ? M - i0 : FR_BLAS_MAX);
        const REAL *Ai = A + (ta ? (size_t)i0 : (size_t)i0 * lda);
        for (int64_t k0 = 0; k0 < K; k0 += FR_BLAS_MAX) {
            int k = (int)(K - k0 < FR_BLAS_MAX ? K - k0 : FR_BLAS_MAX);
            REAL b = k0 ? 1 : beta;
            gemm(&ctb, &cta, &n, &m, &k, &alpha, (REAL *)(Bm + (tb ? (size_t)k0 : (size_t)k0 * ldb)), &ib,
                 (REAL *)(Ai + (ta ? (size_t)k0 * lda : (size_t)k0)), &ia, &b, C + (size_t)i0 * ldc, &ic);
        }
    }
    return FR_OK;
}

#define FR_MR 6   /* rows of a register block: 2 * FR_MR accumulators + 2 panel vectors + 1 broadcast */
/* Rows of a block of the time loop's product (packed_gemm), where the weights are the big operand and
 * every block reads all of them: with AVX-512's 32 vector registers, up to 12 rows (24 accumulators),
 * so a batch of up to 12 reads the weights once per step. */
#if FR_VBYTES >= 64
#define FR_MR_LOOP 12
#else
#define FR_MR_LOOP FR_MR
#endif

typedef REAL SFX(v4) __attribute__((vector_size(4 * sizeof(REAL))));
#if FR_DOUBLE
typedef int64_t SFX(m4) __attribute__((vector_size(32)));
#else
typedef int32_t SFX(m4) __attribute__((vector_size(16)));
#endif

/* The big products' packing (pack_a, pack_a_block_t, pack_b below) reads its sources, big operands in
 * L3 or memory, in short runs at long strides (a row of a micro-panel, a run of FR_BMR at a stride of
 * 3H), which the hardware prefetchers follow poorly: the rows copied in order are prefetched
 * FR_PACK_AHEAD terms ahead, and a block transposed (transpose_rows) prefetches the rows packed after
 * it. It also transposes pairs of rows (FR_BMR = 6 at AVX2 is 4 + 2) instead of copying them one
 * element at a time. Measured with benches/gemm.c's products against the version without (2 threads,
 * Zen 5, alternating, median of 5 runs of 8 calls), AVX2: weight gradient 0.965x / 0.983x (gnmt /
 * large), dx 0.957x / 0.990x, input projection 0.988x / 0.993x; AVX-512: 0.973x / 0.985x, 0.986x /
 * 0.986x, 1.015x / 0.991x. The values packed are the same: so are the results. */
#define FR_PACK_AHEAD 8

/* Rows a[u*lda + 0..kc) of `nrows` rows (a multiple of 4 first, then pairs, then one) written
 * transposed, d[k*ldd + u]: 4 x 4 and 2 x 4 tiles transposed in registers, so every load moves 4
 * elements. With `next` (NULL: none), the first kc elements of the `nnext` rows packed after these
 * (rows of stride lda there too) are prefetched on the way, a line of each per line of terms. */
static void SFX(transpose_rows)(REAL *restrict d, size_t ldd, const REAL *a, size_t lda, int64_t nrows, int64_t kc,
                                const REAL *next, int64_t nnext)
{
    const int64_t per_line = 64 / (int64_t)sizeof(REAL);
    int64_t i = 0;
    for (; i + 4 <= nrows; i += 4) {
        const REAL *r = a + (size_t)i * lda;
        int64_t k = 0;
        for (; k + 4 <= kc; k += 4) {
            if (next && k % per_line == 0 && i == 0)
                for (int64_t u = 0; u < nnext; u++) __builtin_prefetch(next + (size_t)u * lda + k, 0, 3);
            SFX(v4) r0, r1, r2, r3;
            memcpy(&r0, r + k, sizeof r0);
            memcpy(&r1, r + lda + k, sizeof r1);
            memcpy(&r2, r + 2 * lda + k, sizeof r2);
            memcpy(&r3, r + 3 * lda + k, sizeof r3);
            const SFX(m4) lo = {0, 4, 1, 5}, hi = {2, 6, 3, 7}, l2 = {0, 1, 4, 5}, h2 = {2, 3, 6, 7};
            SFX(v4) t0 = __builtin_shuffle(r0, r1, lo), t1 = __builtin_shuffle(r0, r1, hi);
            SFX(v4) t2 = __builtin_shuffle(r2, r3, lo), t3 = __builtin_shuffle(r2, r3, hi);
            SFX(v4) c0 = __builtin_shuffle(t0, t2, l2), c1 = __builtin_shuffle(t0, t2, h2);
            SFX(v4) c2 = __builtin_shuffle(t1, t3, l2), c3 = __builtin_shuffle(t1, t3, h2);
            REAL *o = d + (size_t)k * ldd + i;
            memcpy(o, &c0, sizeof c0);
            memcpy(o + ldd, &c1, sizeof c1);
            memcpy(o + 2 * ldd, &c2, sizeof c2);
            memcpy(o + 3 * ldd, &c3, sizeof c3);
        }
        for (; k < kc; k++)
            for (int64_t u = 0; u < 4; u++) d[(size_t)k * ldd + i + u] = r[(size_t)u * lda + k];
    }
    for (; i + 2 <= nrows; i += 2) {
        const REAL *r = a + (size_t)i * lda;
        int64_t k = 0;
        for (; k + 4 <= kc; k += 4) {
            SFX(v4) r0, r1;
            memcpy(&r0, r + k, sizeof r0);
            memcpy(&r1, r + lda + k, sizeof r1);
            const SFX(m4) lo = {0, 4, 1, 5}, hi = {2, 6, 3, 7};
            SFX(v4) t0 = __builtin_shuffle(r0, r1, lo), t1 = __builtin_shuffle(r0, r1, hi);
            REAL *o = d + (size_t)k * ldd + i;
            memcpy(o, &t0, 2 * sizeof(REAL));
            memcpy(o + ldd, (REAL *)&t0 + 2, 2 * sizeof(REAL));
            memcpy(o + 2 * ldd, &t1, 2 * sizeof(REAL));
            memcpy(o + 3 * ldd, (REAL *)&t1 + 2, 2 * sizeof(REAL));
        }
        for (; k < kc; k++)
            for (int64_t u = 0; u < 2; u++) d[(size_t)k * ldd + i + u] = r[(size_t)u * lda + k];
    }
    for (; i < nrows; i++)
        for (int64_t k = 0; k < kc; k++) d[(size_t)k * ldd + i] = a[(size_t)i * lda + k];
}

/* Bmat[k][c] = src[colbase(c) + k * kstride], with colbase(c) = (c / hs) * gstride + (j0 + c % hs) * cstride:
 * `ngroups` groups of `hs` columns (gates of one hidden slice), zero-padded up to np columns. */
void SFX(pack_panels)(REAL *P, const REAL *src, int64_t K, int64_t ngroups, int64_t hs, int64_t j0, size_t gstride,
                      size_t cstride, size_t kstride, int64_t np)
{
    const int64_t nc = ngroups * hs;
    for (int64_t c = nc; c < np; c++)
        for (int64_t k = 0; k < K; k++) P[(size_t)(c / NR) * K * NR + (size_t)k * NR + c % NR] = 0;
    if (kstride == 1) {          /* columns of Bmat are contiguous in src: transposed, a run of columns at a time */
        for (int64_t g = 0, c = 0; g < ngroups; g++)
            for (int64_t u = 0; u < hs;) {
                const int64_t run = hs - u < NR - c % NR ? hs - u : NR - c % NR;   /* within a group and a panel */
                SFX(transpose_rows)(P + (size_t)(c / NR) * K * NR + c % NR, NR,
                                    src + (size_t)g * gstride + (size_t)(j0 + u) * cstride, cstride, run, K, NULL, 0);
                u += run;
                c += run;
            }
    } else {                     /* rows of Bmat are (nearly) contiguous in src: walk them */
        for (int64_t k = 0; k < K; k++)
            for (int64_t g = 0, c = 0; g < ngroups; g++) {
                const REAL *s = src + (size_t)g * gstride + (size_t)j0 * cstride + (size_t)k * kstride;
                for (int64_t u = 0; u < hs; u++, c++)
                    P[(size_t)(c / NR) * K * NR + (size_t)k * NR + c % NR] = s[(size_t)u * cstride];
            }
    }
}

/* Store an accumulated row: C[0..nc) = (acc ? C : 0) + (v0, v1). */
static inline __attribute__((always_inline)) void SFX(store_row)(REAL *c, VEC v0, VEC v1, int64_t nc, int acc)
{
    REAL tmp[NR];
    memcpy(tmp, &v0, sizeof v0);
    memcpy(tmp + VL, &v1, sizeof v1);
    if (acc)
        for (int64_t j = 0; j < nc; j++) c[j] += tmp[j];
    else
        memcpy(c, tmp, sizeof(REAL) * nc);
}

/* One MRC x NR block of C (+)= A P, MRC a compile-time constant (1 < MRC <= FR_MR_LOOP) after inlining:
 * A(i, k) = A[i * rs + k * cs]; columns past `nc` are computed but not stored; `acc` adds into C; the
 * first `pfn` terms (pfn <= K) each prefetch one line into L2, the lines from `pf` on. */
static inline __attribute__((always_inline)) void SFX(ukernel)(const int64_t MRC, int64_t nc, int64_t K, const REAL *A,
                                                              size_t rs, size_t cs, const REAL *P, REAL *C,
                                                              size_t ldc, int acc, const char *pf, int64_t pfn)
{
    typedef VEC V;
    V c0[FR_MR_LOOP], c1[FR_MR_LOOP];
    for (int64_t i = 0; i < MRC; i++) c0[i] = c1[i] = (V){0};
    for (int64_t k = 0; k < K; k++) {
        if (k < pfn) __builtin_prefetch(pf + (size_t)k * 64, 0, 2);
        V b0 = *(const V *)(P + (size_t)k * NR);
        V b1 = *(const V *)(P + (size_t)k * NR + VL);
        for (int64_t i = 0; i < MRC; i++) {
            REAL av = A[i * rs + k * cs];
            c0[i] += av * b0;
            c1[i] += av * b1;
        }
    }
    for (int64_t i = 0; i < MRC; i++) SFX(store_row)(C + (size_t)i * ldc, c0[i], c1[i], nc, acc);
}

/* The one-row block (B = 1 streaming), on NP panels side by side (NP = 1, 2 or 4 after inlining;
 * panel q at P + q * ps): U partial sums over k per panel (below) and the panels side by side break
 * the FMA latency chain that a single accumulator pair would wait on, and every panel gets exactly the
 * sums it would get alone. A step
 * reads every weight once here, two FMAs a vector from L2 (or L3), so the loop runs at the cache's
 * bandwidth: two panels at once keep twice the lines in flight, and with PF the panels are also
 * prefetched PF terms ahead. Measured on the Sapphire Rapids (one thread's share at H = 256 and 512,
 * 2 threads, median of 3000 calls): AVX-512 one panel with PF 8 2.62 / 13.8 us, two without 2.28-2.34
 * / 11.9 us (with PF: slower); AVX2 one panel with PF 8 3.16 us, two with PF 8 2.93 us. Panels taken
 * together are not prefetched at any level (FR_PF_PAIR). On Zen 5 at AVX2 dropping their prefetches
 * gave (benches.ab, GRU, B = 1) stream-256 inference 0.962x, training 0.965x, stream-512 1.000x /
 * 0.994x, RNN stream-256 inference 0.948x; prefetching them 64 or 128 terms ahead into L2 instead
 * made stream-512 inference 1.13x / 1.09x. */
#define FR_PF_TERMS 8
#define FR_PF_PAIR 0
/* Partial sums a panel keeps (U) and panels taken together (NP), both constants after inlining:
 * U * NP * 2 accumulators must fit the vector registers with a broadcast. With 32 (AVX-512): two
 * panels, four sums each. With AVX2's 16, two panels of four sums kept two accumulators on the stack
 * inside the loop (a store and a reload every four terms, seen in the disassembly); AVX2 takes four
 * panels of one sum where a panel is short (K <= FR_QUAD_K: a forward's recurrent product up to 512
 * units, the RNN's backward too), and two panels of two sums otherwise (the GRU backward's K = 3 H),
 * eight independent chains either way. Measured with benches.ab at the AVX2 level against the build
 * that spilled (GRU, B = 1): four panels of one sum, stream-256 inference 0.923x and training 0.953x, but stream-512 training 1.04x, where two of two
 * sums gave 0.988x (their weights, 1.5 MiB a thread, stream partly from L3, and four chains a panel
 * did not hide that latency). This choice against the build that spilled (20 rounds, a slow hour):
 * stream-256 inference 0.984x, training 0.936x, stream-512 0.967x and 0.976x, RNN stream-256
 * inference 0.948x. FR_QUAD_K was 256 until a later session (Zen 5, benches.ab at AVX2, 20 rounds) gave
 * 512: GRU stream-512 inference 0.949x and 0.975x (rounds' medians 0.944, 0.959), training 0.990x (the
 * forward 0.969x), RNN stream-512 inference 0.928x, training 0.963x; stream-256 bitwise the same. One
 * panel of four sums (one stream, as a plain read) for K > 512 made the GRU backward 1.04x (stream-512)
 * and 1.10x (stream-256) slower. A panel's sums do not depend on how many panels it is taken with, so
 * a column gets the same bits whichever thread, and however many threads, compute it (U depends on
 * K alone). SSE2 (baseline, one panel at a time) keeps four sums: eight accumulators, no spill. */
#define FR_QUAD_K 512
static inline __attribute__((always_inline)) void SFX(ukernel1)(const int NP, const int U, const int PF, int64_t nc,
                                                               int64_t K, const REAL *A, size_t cs, const REAL *P,
                                                               size_t ps, REAL *C, int acc)
{
    typedef VEC V;
    V c0[4][4], c1[4][4];               /* (NP <= 4 and U <= 4; only NP x U of each used) */
    for (int q = 0; q < NP; q++)
        for (int u = 0; u < U; u++) c0[q][u] = c1[q][u] = (V){0};
    int64_t k = 0;
    for (; k + U <= K; k += U) {
        if (PF && k + PF + U <= K)       /* (no pointer past the panel) */
            for (int q = 0; q < NP; q++)
                for (int64_t b = 0; b < U * NR * (int64_t)sizeof(REAL); b += 64)
                    __builtin_prefetch((const char *)(P + q * ps + (size_t)(k + PF) * NR) + b, 0, 3);
        for (int64_t u = 0; u < U; u++) {
            REAL av = A[(size_t)(k + u) * cs];
            for (int q = 0; q < NP; q++) {
                c0[q][u] += av * *(const V *)(P + q * ps + (size_t)(k + u) * NR);
                c1[q][u] += av * *(const V *)(P + q * ps + (size_t)(k + u) * NR + VL);
            }
        }
    }
    for (; k < K; k++) {
        REAL av = A[(size_t)k * cs];
        for (int q = 0; q < NP; q++) {
            c0[q][0] += av * *(const V *)(P + q * ps + (size_t)k * NR);
            c1[q][0] += av * *(const V *)(P + q * ps + (size_t)k * NR + VL);
        }
    }
    for (int q = 0; q < NP; q++) {
        V s0 = c0[q][0], s1 = c1[q][0];
        if (U == 2) {
            s0 += c0[q][1];
            s1 += c1[q][1];
        } else if (U == 4) {
            s0 = (c0[q][0] + c0[q][1]) + (c0[q][2] + c0[q][3]);
            s1 = (c1[q][0] + c1[q][1]) + (c1[q][2] + c1[q][3]);
        }
        SFX(store_row)(C + q * NR, s0, s1, nc, acc);
    }
}

/* C[0, Np) = A P for one row (B = 1): NPMAX panels at a time (4 or 2), then two, then a last one
 * alone, all with U sums (taken last to first with rev, see packed_gemm). */
static inline __attribute__((always_inline)) void SFX(one_row)(const int NPMAX, const int U, int64_t npanels, int64_t K,
                                                              const REAL *A, const REAL *P, REAL *C, int rev)
{
    int64_t q = 0;
    if (NPMAX == 4)
        for (; q + 3 < npanels; q += 4) {
            const int64_t p = rev ? npanels - 4 - q : q;
            SFX(ukernel1)(4, U, FR_PF_PAIR, NR, K, A, 1, P + (size_t)p * K * NR, (size_t)K * NR, C + (size_t)p * NR, 0);
        }
    for (; q + 1 < npanels; q += 2) {
        const int64_t p = rev ? npanels - 2 - q : q;
        SFX(ukernel1)(2, U, FR_PF_PAIR, NR, K, A, 1, P + (size_t)p * K * NR, (size_t)K * NR, C + (size_t)p * NR, 0);
    }
    if (q < npanels) {
        const int64_t p = rev ? 0 : npanels - 1;
        SFX(ukernel1)(1, U, FR_PF_TERMS, NR, K, A, 1, P + (size_t)p * K * NR, 0, C + (size_t)p * NR, 0);
    }
}

/* Any block of mr <= FR_MR_LOOP rows, dispatched to a kernel compiled for exactly that many rows;
 * `pfn` lines from `pf` prefetched into L2 on the way (one a term). */
static inline __attribute__((always_inline)) void SFX(ukernel_mr)(int64_t mr, int64_t nc, int64_t K, const REAL *A, size_t rs,
                                                                 size_t cs, const REAL *P, REAL *C, size_t ldc,
                                                                 int acc, const char *pf, int64_t pfn)
{
    switch (mr) {
    case 1: SFX(ukernel1)(1, 4, FR_PF_TERMS, nc, K, A, cs, P, 0, C, acc); break;
    case 2: SFX(ukernel)(2, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 3: SFX(ukernel)(3, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 4: SFX(ukernel)(4, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 5: SFX(ukernel)(5, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
#if FR_MR_LOOP > 6
    case 7: SFX(ukernel)(7, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 8: SFX(ukernel)(8, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 9: SFX(ukernel)(9, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 10: SFX(ukernel)(10, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 11: SFX(ukernel)(11, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    case 12: SFX(ukernel)(12, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
#endif
    default: SFX(ukernel)(6, nc, K, A, rs, cs, P, C, ldc, acc, pf, pfn); break;
    }
}

/* One step's recurrent product, by one thread: C[M, Np] = A[M, K] P (A rows of stride lda). The rows
 * are cut into the fewest blocks of at most FR_MR_LOOP rows, of near-equal size (with 6-row blocks,
 * B = 20 as 5, 5, 5, 5 rather than 6, 6, 6, 2): a block of one or two rows keeps too few accumulators
 * to hide the latency of its fused multiply-adds. With `rev`
 * the panels are taken last to first: called with rev alternating from step to step, a thread whose
 * packed weights exceed its L2 starts each step on the panels the previous step used last, still in
 * L2, instead of on those that a cyclic sweep has just evicted (the result does not change).
 * The first block of rows reads a panel from wherever it is (L3 when a thread's weights exceed its
 * L2: 6 MiB at H = 1024), the others from L2; those others prefetch the next panel into L2, a line
 * a term, so that the next first block finds it there. Measured (benches.ab, 2 threads, AVX-512):
 * GRU inference at large 0.93x, training at large 0.98x (forward 0.955x), gnmt 0.97x, medium 0.98x;
 * at AVX2 large 0.98x, gnmt inference 0.97x; small (the weights in L2) 0.99-1.02x. */
__attribute__((noinline)) void SFX(packed_gemm)(int64_t M, int64_t Np, int64_t K, const REAL *A, size_t lda,
                                               const REAL *P, REAL *C, size_t ldc, int rev)
{
    const int64_t nb = (M + FR_MR_LOOP - 1) / FR_MR_LOOP, npanels = Np / NR;
    /* nb near-equal blocks: the first M % nb of them one row longer (divisions once per call, not per
       panel: a 64-bit division costs tens of cycles, and a B = 1 step has dozens of panels) */
    const int64_t base = nb ? M / nb : 0, longer = nb ? M % nb : 0;
#if FR_VBYTES >= 32
    if (M == 1) {           /* B = 1 (one_row): the panels' sums as ukernel1 explains */
#if FR_VBYTES == 32
        if (K <= FR_QUAD_K)
            SFX(one_row)(4, 1, npanels, K, A, P, C, rev);
        else
            SFX(one_row)(2, 2, npanels, K, A, P, C, rev);
#else
        SFX(one_row)(2, 4, npanels, K, A, P, C, rev);
#endif
        return;
    }
#endif
    const int64_t plines = K * NR * (int64_t)sizeof(REAL) / 64;      /* a panel's cache lines */
    for (int64_t q = 0; q < npanels; q++) {
        const int64_t p = rev ? npanels - 1 - q : q, pnext = rev ? p - 1 : p + 1;
        const int pf = q + 1 < npanels;
        const char *next = (const char *)(P + (size_t)(pf ? pnext : p) * K * NR);
        for (int64_t r = 0, i0 = 0, done = 0; r < nb; r++) {
            const int64_t mr = base + (r < longer);
            int64_t pfn = pf && r > 0 ? plines - done : 0;
            if (pfn > K) pfn = K;
            SFX(ukernel_mr)(mr, NR, K, A + (size_t)i0 * lda, lda, 1, P + (size_t)p * K * NR,
                            C + (size_t)i0 * ldc + (size_t)p * NR, ldc, 0, next + done * 64, pfn);
            done += pfn;
            i0 += mr;
        }
    }
}

/* Few rows or a short sum (a short call, B = 1): packing B would cost more than the product, so B is
 * read in place, as row updates (B's rows contiguous) or dot products (B's columns contiguous). */
static void SFX(direct_gemm)(int64_t M, int64_t N, int64_t K, const REAL *A, size_t ars, size_t acs, const REAL *Bm,
                             size_t brs, size_t bcs, REAL *C, size_t ldc, int acc)
{
    const int64_t nt = omp_get_num_threads(), tid = omp_get_thread_num();
    if (M > FR_DIRECT) {                 /* a short sum (K <= FR_DIRECT): each thread a share of the rows */
        const int64_t i0 = (int64_t)((int64_t)M * tid / nt), i1 = (int64_t)((int64_t)M * (tid + 1) / nt);
        SFX(row_updates)(C + (size_t)i0 * ldc, ldc, A + (size_t)i0 * ars, ars, acs, i1 - i0, Bm, brs, bcs, N, K, acc);
        return;
    }
    /* few rows: each thread a share of the columns, as row updates (B's rows contiguous) or dot products;
       the shares are whole chunks of UNITS columns, so that whichever thread computes a column, it is
       computed by the same code (row_block's vector or single-column path, dots' groups) */
    const int64_t W = UNITS, chunks = (N + W - 1) / W;
    const int64_t c0 = (int64_t)((int64_t)chunks * tid / nt), c1 = (int64_t)((int64_t)chunks * (tid + 1) / nt);
    const int64_t j0 = c0 * W < N ? c0 * W : N, j1 = c1 * W < N ? c1 * W : N;
    if (bcs == 1 || acs != 1 || brs != 1)
        SFX(row_updates)(C + j0, ldc, A, ars, acs, M, Bm + (size_t)j0 * bcs, brs, bcs, j1 - j0, K, acc);
    else
        SFX(dots)(C + j0, ldc, A, ars, M, Bm + (size_t)j0 * bcs, bcs, j1 - j0, K, acc);
}

/* The big products (input projection, dx, weight gradients), shared by all threads of a parallel
 * region, who must all call it:  C[M, N] = (acc ? C : 0) + A B  with A(i, k) = A[i*ars + k*acs],
 * B(k, j) = Bm[k*brs + j*bcs]. The loops of GotoBLAS / BLIS, each thread on its own data: a thread owns
 * a contiguous share of the blocks of BMR rows (the same blocks whatever the thread count); it packs
 * B, FR_BKC x FR_BNC at a time, into panels of BNR columns in its buffer P, then BMC of its rows of A
 * at a time into micro-panels of BMR rows (k-major, zero-padded), and multiplies each micro-panel of
 * A by each panel of B, in the order below. No thread waits for another (no barrier inside; the caller puts one where a result is read by other
 * threads). Every element of C is, for each block of FR_BKC terms in k order, one chain of fused
 * multiply-adds from 0 that is then added to C: the same order whatever the thread count.
 * Per level (sizes for float; NC scaled down for double so the blocks keep their bytes):
 *  - AVX-512 (32 registers): 12 x 2 vectors (24 accumulators), so that a panel of B (the vector
 *    operand, 128 bytes a term) is read once per 12 rows rather than 6: the micro-panel of A
 *    (12 x FR_BKC) stays in L1 and the panels of B (a block of FR_BKC x FR_BNC, 1 MiB, in L2) stream
 *    past it (FR_BLOOP_A: for each micro-panel of A, all the panels of B).
 *  - AVX2 and SSE2 (16 registers): 6 x 2 vectors (12 accumulators, 2 panel vectors, 1 broadcast);
 *    the order of GotoBLAS: for each panel of B (FR_BKC x BNR, 16 KiB, in L1), all the micro-panels of
 *    a block of FR_BMC rows of A (144 KiB, in L2; the AMD Zen 3 L2 is 512 KiB). */
#if FR_VBYTES >= 64
#define FR_BMR 12
#define FR_BLOOP_A 1
#define FR_BNC (1024 * 4 / (int)sizeof(REAL))
#else
#define FR_BMR 6
#define FR_BLOOP_A 0
#define FR_BNC (2048 * 4 / (int)sizeof(REAL))
#endif
#define FR_BKC 256                /* terms of a packed block */
#define FR_BMC 144                /* rows of A packed at a time (a multiple of FR_BMR) */
enum { BNV = 2, BNR = BNV * VL }; /* vectors, columns of the register block */
enum { BNC = FR_BNC / BNR * BNR, BMC = FR_BMC / FR_BMR * FR_BMR };
/* The micro-panels of A lie FR_APAD elements apart past their kc * FR_BMR: at kc = FR_BKC a panel is
 * 6 KiB (AVX2) or 12 KiB (AVX-512) of floats, so without the pad the panels that pack_a_block_t
 * writes at once start on the same few cache sets (at AVX2, 24 panels on two). Measured on a Zen 4
 * (2 threads, perf's share of pack_a_block_t in benches/gemm.c's weight gradient, 3 runs each): AVX2
 * gnmt 5.8-5.9% -> 4.2-4.7%, large 2.9-3.1% -> 2.5-2.8%; AVX-512 the same within the noise;
 * benches.ab GRU gnmt training at AVX2 0.989x (its backward 0.975x). The values packed do not change. */
#define FR_APAD (64 / (int)sizeof(REAL))
static inline size_t SFX(apanel)(int64_t kc) { return (size_t)kc * FR_BMR + FR_APAD; }
size_t SFX(pack_size)(void) { return (size_t)FR_BKC * BNC + (size_t)(BMC / FR_BMR) * SFX(apanel)(FR_BKC); }

/* The register block: C[0..mr, 0..nc) (+)= Ap Bp over kc terms, Ap a micro-panel (Ap[k*BMR + i]),
 * Bp a panel (Bp[k*BNR + j]); `add` adds into C. */
static inline __attribute__((always_inline)) void SFX(bkernel)(int64_t kc, const REAL *restrict Ap,
                                                              const REAL *restrict Bp, REAL *restrict C,
                                                              size_t ldc, int64_t mr, int64_t nc, int add)
{
    typedef VEC V;
    V c[FR_BMR][BNV];
    /* the block of C is read and written after the k loop: fetch it now, in the loop's shadow */
    for (int i = 0; i < FR_BMR; i++)
        if (i < mr)
            for (int j = 0; j < BNR * (int)sizeof(REAL); j += 64) __builtin_prefetch((const char *)(C + (size_t)i * ldc) + j, 1, 3);
    for (int i = 0; i < FR_BMR; i++)
        for (int v = 0; v < BNV; v++) c[i][v] = (V){0};
#pragma GCC unroll 4
    for (int64_t k = 0; k < kc; k++) {
        V b[BNV];
        for (int v = 0; v < BNV; v++) b[v] = *(const V *)(Bp + (size_t)k * BNR + v * VL);
        for (int i = 0; i < FR_BMR; i++) {
            const REAL av = Ap[(size_t)k * FR_BMR + i];
            for (int v = 0; v < BNV; v++) c[i][v] += av * b[v];
        }
    }
    if (mr == FR_BMR && nc == BNR) {
        for (int i = 0; i < FR_BMR; i++)
            for (int v = 0; v < BNV; v++) {
                V t = c[i][v];
                REAL *p = C + (size_t)i * ldc + v * VL;
                if (add) {
                    V o;
                    memcpy(&o, p, sizeof o);
                    t = o + t;
                }
                memcpy(p, &t, sizeof t);
            }
        return;
    }
    for (int i = 0; i < FR_BMR; i++) {
        if (i >= mr) break;
        REAL tmp[BNR];
        memcpy(tmp, c[i], sizeof tmp);
        REAL *p = C + (size_t)i * ldc;
        if (add)
            for (int64_t j = 0; j < nc; j++) p[j] += tmp[j];
        else
            memcpy(p, tmp, sizeof(REAL) * nc);
    }
}

/* A[0..mr, 0..kc) (strides rs, cs; A transposed goes to pack_a_block_t) into a micro-panel Ap[k*BMR + i],
 * rows mr..BMR zero. */
static void SFX(pack_a)(REAL *restrict Ap, const REAL *A, size_t rs, size_t cs, int64_t mr, int64_t kc,
                        const REAL *next, int64_t nnext)
{
    if (mr < FR_BMR)
        for (int64_t k = 0; k < kc; k++)
            for (int64_t i = mr; i < FR_BMR; i++) Ap[(size_t)k * FR_BMR + i] = 0;
    if (cs == 1) {           /* A's rows contiguous */
        SFX(transpose_rows)(Ap, FR_BMR, A, rs, mr, kc, next, nnext);
        return;
    }
    for (int64_t i = 0; i < mr; i++)
        for (int64_t k = 0; k < kc; k++) Ap[(size_t)k * FR_BMR + i] = A[(size_t)i * rs + (size_t)k * cs];
}

/* A transposed (rs == 1, each k a run of contiguous rows): the block A[0..mc, 0..kc) into its
 * micro-panels at once, k outermost, so that each run of mc elements is read once, in order. Packing
 * micro-panel by micro-panel instead reads BMR elements a line at a stride of cs (3H: 3 KiB of floats
 * at H = 256), lines that fall in few L1 sets and are fetched again for every micro-panel. Same values
 * as pack_a, panel by panel. */
static void SFX(pack_a_block_t)(REAL *restrict Ap, const REAL *A, size_t cs, int64_t mc, int64_t kc)
{
    const int64_t full = mc / FR_BMR, rest = mc - full * FR_BMR;
    for (int64_t k = 0; k < kc; k++) {
        const REAL *a = A + (size_t)k * cs;
        REAL *d = Ap + (size_t)k * FR_BMR;
        if (k + FR_PACK_AHEAD < kc)
            for (int64_t b = 0; b < mc * (int64_t)sizeof(REAL); b += 64)
                __builtin_prefetch((const char *)(a + FR_PACK_AHEAD * cs) + b, 0, 3);
        for (int64_t q = 0; q < full; q++) memcpy(d + (size_t)q * SFX(apanel)(kc), a + q * FR_BMR, sizeof(REAL) * FR_BMR);
        if (rest) {
            REAL *t = d + (size_t)full * SFX(apanel)(kc);
            for (int64_t i = 0; i < FR_BMR; i++) t[i] = i < rest ? a[full * FR_BMR + i] : 0;
        }
    }
}

/* B[0..kc, 0..nc) (strides brs, bcs) into panels of BNR columns, P[(p*kc + k)*BNR + c], zero-padded. */
static void SFX(pack_b)(REAL *restrict P, const REAL *Bm, size_t brs, size_t bcs, int64_t kc, int64_t nc)
{
    const int64_t npanels = (nc + BNR - 1) / BNR;
    for (int64_t p = 0; p < npanels; p++) {
        REAL *dst = P + (size_t)p * kc * BNR;
        const int64_t w = nc - p * BNR < BNR ? nc - p * BNR : BNR;
        const int64_t wnext = p + 1 < npanels ? (nc - (p + 1) * BNR < BNR ? nc - (p + 1) * BNR : BNR) : 0;
        const REAL *src = Bm + (size_t)(p * BNR) * bcs;
        if (w < BNR)
            for (int64_t k = 0; k < kc; k++) memset(dst + (size_t)k * BNR + w, 0, sizeof(REAL) * (BNR - w));
        if (bcs == 1) {      /* B's rows contiguous */
            if (w == BNR)
                for (int64_t k = 0; k < kc; k++) {
                    if (k + FR_PACK_AHEAD < kc)
                        for (int b = 0; b < BNR * (int)sizeof(REAL); b += 64)
                            __builtin_prefetch((const char *)(src + (size_t)(k + FR_PACK_AHEAD) * brs) + b, 0, 3);
                    memcpy(dst + (size_t)k * BNR, src + (size_t)k * brs, sizeof(REAL) * BNR);
                }
            else
                for (int64_t k = 0; k < kc; k++) memcpy(dst + (size_t)k * BNR, src + (size_t)k * brs, sizeof(REAL) * w);
        } else if (brs == 1) /* B's columns contiguous (w_ih in the input projection) */
            SFX(transpose_rows)(dst, BNR, src, bcs, w, kc, wnext ? src + BNR * bcs : NULL, wnext);
        else
            for (int64_t c = 0; c < w; c++)
                for (int64_t k = 0; k < kc; k++) dst[(size_t)k * BNR + c] = src[(size_t)c * bcs + (size_t)k * brs];
    }
}

void SFX(par_gemm)(int64_t M, int64_t N, int64_t K, const REAL *A, size_t ars, size_t acs, const REAL *Bm, size_t brs,
                   size_t bcs, REAL *C, size_t ldc, int acc, REAL *P)
{
    if (M <= 0 || N <= 0) return;
    if (M <= FR_DIRECT || K <= FR_DIRECT) {
        SFX(direct_gemm)(M, N, K, A, ars, acs, Bm, brs, bcs, C, ldc, acc);
        return;
    }
    /* this thread's row blocks: a contiguous share, the same at every block of B */
    const int64_t nrows = (M + FR_BMR - 1) / FR_BMR, nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t r0 = (int64_t)((int64_t)nrows * tid / nt), r1 = (int64_t)((int64_t)nrows * (tid + 1) / nt);
    if (r0 >= r1) return;
    const int64_t i_lo = r0 * FR_BMR, i_hi = r1 * FR_BMR < M ? r1 * FR_BMR : M;
    REAL *Ap = P + (size_t)FR_BKC * BNC;
    for (int64_t jc = 0; jc < N; jc += BNC) {
        const int64_t nc = N - jc < BNC ? N - jc : BNC, npanels = (nc + BNR - 1) / BNR;
        for (int64_t k0 = 0; k0 < K; k0 += FR_BKC) {
            const int64_t kc = K - k0 < FR_BKC ? K - k0 : FR_BKC;
            const int add = acc || k0 > 0;
            SFX(pack_b)(P, Bm + (size_t)k0 * brs + (size_t)jc * bcs, brs, bcs, kc, nc);
            for (int64_t ic = i_lo; ic < i_hi; ic += BMC) {
                const int64_t mc = i_hi - ic < BMC ? i_hi - ic : BMC, nmp = (mc + FR_BMR - 1) / FR_BMR;
                if (ars == 1)
                    SFX(pack_a_block_t)(Ap, A + (size_t)ic + (size_t)k0 * acs, acs, mc, kc);
                else
                    for (int64_t q = 0; q < nmp; q++) {
                        const int64_t mr = mc - q * FR_BMR < FR_BMR ? mc - q * FR_BMR : FR_BMR;
                        const REAL *a = A + (size_t)(ic + q * FR_BMR) * ars + (size_t)k0 * acs;
                        const int64_t nnext = q + 1 < nmp ? (mc - (q + 1) * FR_BMR < FR_BMR ? mc - (q + 1) * FR_BMR : FR_BMR) : 0;
                        SFX(pack_a)(Ap + (size_t)q * SFX(apanel)(kc), a, ars, acs, mr, kc, nnext ? a + FR_BMR * ars : NULL, nnext);
                    }
#if !FR_BLOOP_A
                for (int64_t p = 0; p < npanels; p++) {
                    const int64_t w = nc - p * BNR < BNR ? nc - p * BNR : BNR;
                    const REAL *Bp = P + (size_t)p * kc * BNR;
                    for (int64_t q = 0; q < nmp; q++) {
                        const int64_t mr = mc - q * FR_BMR < FR_BMR ? mc - q * FR_BMR : FR_BMR;
                        SFX(bkernel)(kc, Ap + (size_t)q * SFX(apanel)(kc), Bp,
                                     C + (size_t)(ic + q * FR_BMR) * ldc + jc + p * BNR, ldc, mr, w, add);
                    }
                }
#else
                for (int64_t q = 0; q < nmp; q++) {
                    const int64_t mr = mc - q * FR_BMR < FR_BMR ? mc - q * FR_BMR : FR_BMR;
                    for (int64_t p = 0; p < npanels; p++) {
                        const int64_t w = nc - p * BNR < BNR ? nc - p * BNR : BNR;
                        SFX(bkernel)(kc, Ap + (size_t)q * SFX(apanel)(kc), P + (size_t)p * kc * BNR,
                                     C + (size_t)(ic + q * FR_BMR) * ldc + jc + p * BNR, ldc, mr, w, add);
                    }
                }
#endif
            }
        }
    }
}
