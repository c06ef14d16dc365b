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
#define FR_KC 384 /* rows of B packed at a time by par_gemm */

/* Bmat[k][c] = src[colbase(c) + k * kstride], with colbase(c) = (c / hs) * gstride + (j0 + c % hs) * cstride:
 * `ngroups` groups of `hs` columns (gates of one hidden slice), zero-padded up to np columns. */
void SFX(pack_panels)(REAL *P, const REAL *src, int64_t K, int64_t ngroups, int64_t hs, int64_t j0, size_t gstride,
                      size_t cstride, size_t kstride, int64_t np)
{
    const int64_t nc = ngroups * hs;
    for (int64_t c = nc; c < np; c++)
        for (int64_t k = 0; k < K; k++) P[(size_t)(c / NR) * K * NR + (size_t)k * NR + c % NR] = 0;
    if (kstride == 1) {          /* columns of Bmat are contiguous in src: walk them one by one */
        for (int64_t g = 0, c = 0; g < ngroups; g++)
            for (int64_t u = 0; u < hs; u++, c++) {
                REAL *dst = P + (size_t)(c / NR) * K * NR + c % NR;
                const REAL *s = src + (size_t)g * gstride + (size_t)(j0 + u) * cstride;
                for (int64_t k = 0; k < K; k++) dst[(size_t)k * NR] = s[k];
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
 * A(i, k) = A[i * rs + k * cs]; columns past `nc` are computed but not stored; `acc` adds into C. */
static inline __attribute__((always_inline)) void SFX(ukernel)(const int64_t MRC, int64_t nc, int64_t K, const REAL *A,
                                                              size_t rs, size_t cs, const REAL *P, REAL *C,
                                                              size_t ldc, int acc)
{
    typedef VEC V;
    V c0[FR_MR_LOOP], c1[FR_MR_LOOP];
    for (int64_t i = 0; i < MRC; i++) c0[i] = c1[i] = (V){0};
    for (int64_t k = 0; k < K; k++) {
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

/* The one-row block (B = 1 streaming): four partial sums over k break the FMA latency chain that a
 * single accumulator pair would wait on. */
static inline __attribute__((always_inline)) void SFX(ukernel1)(int64_t nc, int64_t K, const REAL *A, size_t cs,
                                                               const REAL *P, REAL *C, int acc)
{
    typedef VEC V;
    V c0[4] = {{0}}, c1[4] = {{0}};
    int64_t k = 0;
    for (; k + 4 <= K; k += 4)
        for (int64_t u = 0; u < 4; u++) {
            REAL av = A[(size_t)(k + u) * cs];
            c0[u] += av * *(const V *)(P + (size_t)(k + u) * NR);
            c1[u] += av * *(const V *)(P + (size_t)(k + u) * NR + VL);
        }
    for (; k < K; k++) {
        REAL av = A[(size_t)k * cs];
        c0[0] += av * *(const V *)(P + (size_t)k * NR);
        c1[0] += av * *(const V *)(P + (size_t)k * NR + VL);
    }
    SFX(store_row)(C, (c0[0] + c0[1]) + (c0[2] + c0[3]), (c1[0] + c1[1]) + (c1[2] + c1[3]), nc, acc);
}

/* Any block of mr <= FR_MR_LOOP rows, dispatched to a kernel compiled for exactly that many rows. */
static inline __attribute__((always_inline)) void SFX(ukernel_mr)(int64_t mr, int64_t nc, int64_t K, const REAL *A, size_t rs,
                                                                 size_t cs, const REAL *P, REAL *C, size_t ldc,
                                                                 int acc)
{
    switch (mr) {
    case 1: SFX(ukernel1)(nc, K, A, cs, P, C, acc); break;
    case 2: SFX(ukernel)(2, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 3: SFX(ukernel)(3, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 4: SFX(ukernel)(4, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 5: SFX(ukernel)(5, nc, K, A, rs, cs, P, C, ldc, acc); break;
#if FR_MR_LOOP > 6
    case 7: SFX(ukernel)(7, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 8: SFX(ukernel)(8, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 9: SFX(ukernel)(9, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 10: SFX(ukernel)(10, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 11: SFX(ukernel)(11, nc, K, A, rs, cs, P, C, ldc, acc); break;
    case 12: SFX(ukernel)(12, nc, K, A, rs, cs, P, C, ldc, acc); break;
#endif
    default: SFX(ukernel)(6, nc, K, A, rs, cs, P, C, ldc, acc); break;
    }
}

/* One step's recurrent product, by one thread: C[M, Np] = A[M, K] P (A rows of stride lda). The rows
 * are cut into the fewest blocks of at most FR_MR_LOOP rows, of near-equal size (with 6-row blocks,
 * B = 20 as 5, 5, 5, 5 rather than 6, 6, 6, 2): a block of one or two rows keeps too few accumulators
 * to hide the latency of its fused multiply-adds. With `rev`
 * the panels are taken last to first: called with rev alternating from step to step, a thread whose
 * packed weights exceed its L2 starts each step on the panels the previous step used last, still in
 * L2, instead of on those that a cyclic sweep has just evicted (the result does not change). */
__attribute__((noinline)) void SFX(packed_gemm)(int64_t M, int64_t Np, int64_t K, const REAL *A, size_t lda,
                                               const REAL *P, REAL *C, size_t ldc, int rev)
{
    const int64_t nb = (M + FR_MR_LOOP - 1) / FR_MR_LOOP, npanels = Np / NR;
    /* nb near-equal blocks: the first M % nb of them one row longer (divisions once per call, not per
       panel: a 64-bit division costs tens of cycles, and a B = 1 step has dozens of panels) */
    const int64_t base = nb ? M / nb : 0, longer = nb ? M % nb : 0;
    for (int64_t q = 0; q < npanels; q++) {
        const int64_t p = rev ? npanels - 1 - q : q;
        for (int64_t r = 0, i0 = 0; r < nb; r++) {
            const int64_t mr = base + (r < longer);
            SFX(ukernel_mr)(mr, NR, K, A + (size_t)i0 * lda, lda, 1, P + (size_t)p * K * NR,
                            C + (size_t)i0 * ldc + (size_t)p * NR, ldc, 0);
            i0 += mr;
        }
    }
}

/* A row block of a big product: C[rows, 0..N) (+)= A[rows, 0..K) P, A with strides (rs, cs). */
__attribute__((noinline)) static void SFX(gemm_rows)(int64_t mr, int64_t N, int64_t K, const REAL *A, size_t rs, size_t cs,
                                                    const REAL *P, REAL *C, size_t ldc, int acc)
{
    REAL Ap[FR_MR * FR_KC];
    if (cs != 1 && K <= FR_KC) {
        /* A transposed (the weight gradients: rows of A are columns of dgh): copy the block once into
           k-major order, instead of striding through memory (a power-of-two stride that maps every
           k to the same few cache sets) for each of the N / NR panels */
        for (int64_t k = 0; k < K; k++)
            for (int64_t i = 0; i < mr; i++) Ap[k * FR_MR + i] = A[(size_t)i * rs + (size_t)k * cs];
        A = Ap;
        rs = 1;
        cs = FR_MR;
    }
    for (int64_t p = 0; p * NR < N; p++) {
        int64_t nc = N - p * NR < NR ? N - p * NR : NR;
        if (cs == 1)
            SFX(ukernel_mr)(mr, nc, K, A, rs, 1, P + (size_t)p * K * NR, C + (size_t)p * NR, ldc, acc);
        else
            SFX(ukernel_mr)(mr, nc, K, A, rs, cs, P + (size_t)p * K * NR, C + (size_t)p * NR, ldc, acc);
    }
}


/* The lanes of v added pairwise: halves added as vectors down to 16 bytes, then the lanes in a tree
 * ((l0 + l2) + (l1 + l3) for four floats). The same order for every call. */
#if FR_VBYTES >= 32
typedef REAL SFX(vhalf) __attribute__((vector_size(FR_VBYTES / 2)));
#endif
#if FR_VBYTES >= 64
typedef REAL SFX(vquarter) __attribute__((vector_size(FR_VBYTES / 4)));
#endif
static inline __attribute__((always_inline)) REAL SFX(lane_sum)(VEC v)
{
    enum { L16 = 16 / (int64_t)sizeof(REAL) };
    REAL t[L16];
#if FR_VBYTES >= 32
    SFX(vhalf) h0, h1;
    memcpy(&h0, &v, sizeof h0);
    memcpy(&h1, (char *)&v + sizeof h0, sizeof h1);
    h0 += h1;
#if FR_VBYTES >= 64
    SFX(vquarter) q0, q1;
    memcpy(&q0, &h0, sizeof q0);
    memcpy(&q1, (char *)&h0 + sizeof q0, sizeof q1);
    q0 += q1;
    memcpy(t, &q0, sizeof t);
#else
    memcpy(t, &h0, sizeof t);
#endif
#else
    memcpy(t, &v, sizeof t);
#endif
    for (int64_t w = L16 / 2; w >= 1; w /= 2)
        for (int64_t l = 0; l < w; l++) t[l] += t[l + w];
    return t[0];
}

/* out[u] = (acc ? out[u] : 0) + a . b[u * bs ...] for u < n (1 <= n <= 4 after inlining), each
 * over K contiguous elements: two vector accumulators per output, their lanes added pairwise (a tree),
 * then the last K % (2 VL) terms in order. The n outputs run side by side (independent chains that
 * hide the FMA latency and share the loads of a), and each is computed exactly as it would be alone,
 * so grouping never changes a result. */
static inline __attribute__((always_inline)) void SFX(dotn)(const int64_t n, REAL *out, const REAL *a,
                                                           const REAL *b, size_t bs, int64_t K, int acc)
{
    typedef VEC V;
    enum { VL = VL };
    V s0[4], s1[4];
    for (int64_t u = 0; u < n; u++) s0[u] = s1[u] = (V){0};
    int64_t k = 0;
    for (; k + 2 * VL <= K; k += 2 * VL) {
        V a0, a1;
        memcpy(&a0, a + k, sizeof a0);
        memcpy(&a1, a + k + VL, sizeof a1);
        for (int64_t u = 0; u < n; u++) {
            V b0, b1;
            memcpy(&b0, b + u * bs + k, sizeof b0);
            memcpy(&b1, b + u * bs + k + VL, sizeof b1);
            s0[u] += a0 * b0;
            s1[u] += a1 * b1;
        }
    }
    for (int64_t u = 0; u < n; u++) {
        REAL sum = SFX(lane_sum)(s0[u] + s1[u]);
        for (int64_t kk = k; kk < K; kk++) sum += a[kk] * b[u * bs + kk];
        out[u] = acc ? out[u] + sum : sum;
    }
}

/* C[i * ldc + u] (+)= A[i * lda ...] . Bm[u * bs ...] for i < M, u < n: dotn four outputs at a time,
 * all rows of A against the same four rows of Bm while those are in L1 (the weights are read from
 * memory once, not once per row of A). */
void SFX(dots)(REAL *C, size_t ldc, const REAL *A, size_t lda, int64_t M, const REAL *Bm, size_t bs, int64_t n,
               int64_t K, int acc)
{
    int64_t u = 0;
    for (; u + 4 <= n; u += 4)
        for (int64_t i = 0; i < M; i++) SFX(dotn)(4, C + i * ldc + u, A + i * lda, Bm + u * bs, bs, K, acc);
    for (; u < n; u++)
        for (int64_t i = 0; i < M; i++) SFX(dotn)(1, C + i * ldc + u, A + i * lda, Bm + u * bs, bs, K, acc);
}

/* Rows [0, MRC) of C (+)= A B for B's rows contiguous (stride brs), MRC <= 8 after inlining: every
 * element is one chain of fused multiply-adds in k order, started from C (acc) or 0, held in a
 * register while B is read in place, a vector of columns at a time, then single columns. (One vector
 * width only: the callers split columns at multiples of it, so a column takes the same path, and
 * gets the same bits, whichever thread computes it.) */
static inline __attribute__((always_inline)) void SFX(row_block)(const int64_t MRC, REAL *C, size_t ldc, const REAL *A,
                                                                size_t ars, size_t acs, const REAL *Bm, size_t brs,
                                                                int64_t n, int64_t K, int acc)
{
    typedef VEC V;
    enum { VL = VL };
    int64_t u = 0;
    for (; u + VL <= n; u += VL) {
        V s[8];
        for (int64_t i = 0; i < MRC; i++) {
            s[i] = (V){0};
            if (acc) memcpy(&s[i], C + i * ldc + u, sizeof(V));
        }
        for (int64_t k = 0; k < K; k++) {
            V b;
            memcpy(&b, Bm + k * brs + u, sizeof b);
            for (int64_t i = 0; i < MRC; i++) s[i] += A[i * ars + k * acs] * b;
        }
        for (int64_t i = 0; i < MRC; i++) memcpy(C + i * ldc + u, &s[i], sizeof(V));
    }
    for (; u < n; u++)
        for (int64_t i = 0; i < MRC; i++) {
            REAL sum = acc ? C[i * ldc + u] : 0;
            for (int64_t k = 0; k < K; k++) sum += A[i * ars + k * acs] * Bm[k * brs + u];
            C[i * ldc + u] = sum;
        }
}

/* C[i, u] (+)= sum_k A(i, k) Bm[k * brs + u * bcs] for i < M, u < n, A(i, k) = A[i * ars + k * acs]: each
 * element one chain in k order from C (acc) or 0. B's rows contiguous: eight rows of C at a time in
 * registers (row_block); else plain row updates. */
void SFX(row_updates)(REAL *C, size_t ldc, const REAL *A, size_t ars, size_t acs, int64_t M, const REAL *Bm,
                      size_t brs, size_t bcs, int64_t n, int64_t K, int acc)
{
    if (bcs == 1) {
        for (int64_t i0 = 0; i0 < M; i0 += 8) {
            REAL *c = C + i0 * ldc;
            const REAL *a = A + i0 * ars;
            switch (M - i0 < 8 ? M - i0 : 8) {
            case 1: SFX(row_block)(1, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            case 2: SFX(row_block)(2, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            case 3: SFX(row_block)(3, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            case 4: SFX(row_block)(4, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            case 5: SFX(row_block)(5, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            case 6: SFX(row_block)(6, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            case 7: SFX(row_block)(7, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            default: SFX(row_block)(8, c, ldc, a, ars, acs, Bm, brs, n, K, acc); break;
            }
        }
        return;
    }
    for (int64_t i = 0; i < M; i++) {
        REAL *c = C + i * ldc;
        if (!acc) memset(c, 0, sizeof(REAL) * n);
        for (int64_t k = 0; k < K; k++) {
            const REAL a = A[i * ars + k * acs], *b = Bm + k * brs;
            for (int64_t u = 0; u < n; u++) c[u] += a * b[u * bcs];
        }
    }
}

/* Few rows or a short sum (a short call, B = 1): packing B would cost more than the product, so B is
 * read in place, as row updates (B's rows contiguous) or dot products (B's columns contiguous). */
#define FR_DIRECT 8
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
 * B(k, j) = Bm[k*brs + j*bcs]. Each thread owns a contiguous share of the blocks of FR_MR rows; it packs
 * B, FR_KC x NC at a time (about half an L2), into its own buffer P (pack_size() elements) and
 * multiplies its rows by it: no thread waits for another (no barrier inside; the caller puts one
 * where a result is read by other threads). Every element is summed in the same order whatever the
 * thread count. */
#define FR_PACK_BYTES (384 * 1024)
enum { NC0 = FR_PACK_BYTES / (FR_KC * (int)sizeof(REAL)) / NR * NR };
#define FR_NC_TRANSPOSED 4   /* A transposed (weight gradients): B blocks this many times wider, so that
                                the strided copy of each A block (gemm_rows) is made fewer times */
size_t SFX(pack_size)(void) { return (size_t)FR_KC * NC0 * FR_NC_TRANSPOSED; }

void SFX(par_gemm)(int64_t M, int64_t N, int64_t K, const REAL *A, size_t ars, size_t acs, const REAL *Bm, size_t brs,
                   size_t bcs, REAL *C, size_t ldc, int acc, REAL *P)
{
    const int64_t NC = NC0 * (acs != 1 ? FR_NC_TRANSPOSED : 1);
    if (M <= 0 || N <= 0) return;
    if (M <= FR_DIRECT || K <= FR_DIRECT) {
        SFX(direct_gemm)(M, N, K, A, ars, acs, Bm, brs, bcs, C, ldc, acc);
        return;
    }
    /* this thread's row blocks: a contiguous share, the same at every block of B */
    const int64_t nrows = (M + FR_MR - 1) / FR_MR, nt = omp_get_num_threads(), tid = omp_get_thread_num();
    const int64_t r0 = (int64_t)((int64_t)nrows * tid / nt), r1 = (int64_t)((int64_t)nrows * (tid + 1) / nt);
    for (int64_t jc = 0; jc < N && r0 < r1; jc += NC) {
        const int64_t nc = N - jc < NC ? N - jc : NC, npanels = (nc + NR - 1) / NR;
        for (int64_t k0 = 0; k0 < K; k0 += FR_KC) {
            const int64_t kc = K - k0 < FR_KC ? K - k0 : FR_KC;
            for (int64_t p = 0; p < npanels; p++) {          /* B[k0 .. k0+kc, jc .. jc+nc) into panels */
                REAL *dst = P + (size_t)p * kc * NR;
                int64_t w = nc - p * NR < NR ? nc - p * NR : NR;
                const REAL *src = Bm + (size_t)k0 * brs + (size_t)(jc + p * NR) * bcs;
                if (w < NR)
                    for (int64_t k = 0; k < kc; k++) memset(dst + (size_t)k * NR + w, 0, sizeof(REAL) * (NR - w));
                if (bcs == 1)        /* B's rows contiguous */
                    for (int64_t k = 0; k < kc; k++) memcpy(dst + (size_t)k * NR, src + (size_t)k * brs, sizeof(REAL) * w);
                else                 /* B's columns contiguous (brs == 1 here) */
                    for (int64_t c = 0; c < w; c++)
                        for (int64_t k = 0; k < kc; k++) dst[(size_t)k * NR + c] = src[(size_t)c * bcs + (size_t)k * brs];
            }
            for (int64_t r = r0; r < r1; r++) {
                int64_t i0 = r * FR_MR, mr = M - i0 < FR_MR ? M - i0 : FR_MR;
                SFX(gemm_rows)(mr, nc, kc, A + (size_t)i0 * ars + (size_t)k0 * acs, ars, acs, P,
                               C + (size_t)i0 * ldc + jc, ldc, acc || k0 > 0);
            }
        }
    }
}
