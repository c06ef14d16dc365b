/* The products that read the weights in place, not packed: a single step's (a cell's, loop.c:
 * slice_product) and the few-row or short-sum products of par_gemm (gemm.c: direct_gemm). Dot
 * products against weight rows contiguous in k (dots), and row updates against weight rows
 * contiguous in the output columns (row_updates); declared in gemm.h. Compiled once per level and
 * type (kernel.h). */
#include <string.h>

#include "gemm.h"

/* The dot products of a single step, C[i * ldc + u] (+)= A[i * lda ...] . Bm[u * bs ...] over K
 * contiguous terms (x or h against rows of w_ih or w_hh, read in place): DR rows of A by DU rows of Bm
 * at a time, one accumulator vector each, so that a k step loads DR + DU vectors for DR * DU fused
 * multiply-adds (a row at a time it loaded 1 + DU for DU, and reduced every output on its own).
 * Every output, whatever tile computes it: one chain over the K / VL whole vectors in k order, its
 * lanes added pairwise (lane l and l + VL/2, then of those l and l + VL/4, ...), then the last K % VL terms
 * in order, then C (acc). So the tiles, and the threads' shares, never change a result. */
#if FR_VBYTES >= 64
enum { DR = 4, DU = 4, D1 = 16 }; /* 16 accumulators, 4 + 1 operand registers of 32 */
#else
enum { DR = 2, DU = 4, D1 = 8 };  /* 8 accumulators, 2 + 1 operand registers of 16 */
#endif
enum { DMAX = 16 };               /* accumulators of any tile (DR x DU, or 1 x D1) */

#if FR_DOUBLE
typedef int64_t SFX(vidx) __attribute__((vector_size(FR_VBYTES)));
#else
typedef int32_t SFX(vidx) __attribute__((vector_size(FR_VBYTES)));
#endif

/* Lanes of a vector, for the preprocessor (VL's value) */
#if FR_DOUBLE
#define FR_VL (FR_VBYTES / 8)
#else
#define FR_VL (FR_VBYTES / 4)
#endif
#if FR_VL == 16
#define FR_LANES(F, w) F(0, w), F(1, w), F(2, w), F(3, w), F(4, w), F(5, w), F(6, w), F(7, w), F(8, w), F(9, w), \
                       F(10, w), F(11, w), F(12, w), F(13, w), F(14, w), F(15, w)
#elif FR_VL == 8
#define FR_LANES(F, w) F(0, w), F(1, w), F(2, w), F(3, w), F(4, w), F(5, w), F(6, w), F(7, w)
#elif FR_VL == 4
#define FR_LANES(F, w) F(0, w), F(1, w), F(2, w), F(3, w)
#else
#define FR_LANES(F, w) F(0, w), F(1, w)
#endif
/* One level of the tree for two vectors a, b whose lanes hold blocks of w partial sums (one output a
 * block): the shuffles that take lanes o and o + w/2 of every block, a's blocks first, then b's (lane
 * l of the result reads lane FR_LO / FR_HI of a, or of b from VL up). */
#define FR_SRC(l, w) (((l) < FR_VL / 2 ? 0 : FR_VL) + ((l) % (FR_VL / 2)) / ((w) / 2) * (w) + ((l) % (FR_VL / 2)) % ((w) / 2))
#define FR_LO(l, w) FR_SRC(l, w)
#define FR_HI(l, w) (FR_SRC(l, w) + (w) / 2)
#define FR_HALVE(v, w)                                                                                   \
    for (int64_t j = 0; j < (w) / 2; j++)                                                                \
        v[j] = __builtin_shuffle(v[2 * j], v[2 * j + 1], (SFX(vidx)){FR_LANES(FR_LO, w)}) +              \
               __builtin_shuffle(v[2 * j], v[2 * j + 1], (SFX(vidx)){FR_LANES(FR_HI, w)})

/* out[j] = the lanes of s[j] added pairwise (as dot_tile says), j < n (n <= DMAX): VL vectors at a time
 * reduced together, halving their blocks level by level (VL vectors of one output each, VL / 2 of
 * two, ...), down to one vector of VL sums. */
static inline __attribute__((always_inline)) void SFX(lane_sums)(REAL *out, VEC *s, const int64_t n)
{
    for (int64_t j0 = 0; j0 < n; j0 += VL) {
        VEC v[VL];
        for (int64_t j = 0; j < VL; j++) v[j] = j0 + j < n ? s[j0 + j] : (VEC){0};
#if FR_VL >= 16
        FR_HALVE(v, 16);
#endif
#if FR_VL >= 8
        FR_HALVE(v, 8);
#endif
#if FR_VL >= 4
        FR_HALVE(v, 4);
#endif
        FR_HALVE(v, 2);
        REAL t[VL];
        memcpy(t, &v[0], sizeof t);
        for (int64_t j = 0; j < VL && j0 + j < n; j++) out[j0 + j] = t[j];
    }
}

/* A vector loaded once into a register for several uses: left alone, gcc folds the load into every
 * fused multiply-add that uses it (at AVX2, the 2 x 4 tile then loaded 10 vectors a k step, not 6). */
#if defined(__AVX512F__)
#define FR_IN_REGISTER(v) __asm__("" : "+v"(v))
#elif defined(__SSE2__)
#define FR_IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define FR_IN_REGISTER(v) ((void)0)
#endif

/* The tile of R rows by U outputs (R * U <= DMAX after inlining). */
static inline __attribute__((always_inline)) void SFX(dot_tile)(const int64_t R, const int64_t U, REAL *C, size_t ldc,
                                                               const REAL *A, size_t lda, const REAL *b, size_t bs,
                                                               int64_t K, int acc)
{
    typedef VEC V;
    V s[DMAX];
    for (int64_t j = 0; j < R * U; j++) s[j] = (V){0};
    int64_t k = 0;
    for (; k + VL <= K; k += VL) {
        V a[DR];
        for (int64_t r = 0; r < R; r++) memcpy(&a[r], A + r * lda + k, sizeof(V));
        for (int64_t u = 0; u < U; u++) {
            V w;
            memcpy(&w, b + u * bs + k, sizeof w);
            if (R > 1) FR_IN_REGISTER(w);
            for (int64_t r = 0; r < R; r++) s[r * U + u] += a[r] * w;
        }
    }
    REAL sum[DMAX];
    SFX(lane_sums)(sum, s, R * U);
    for (int64_t r = 0; r < R; r++)
        for (int64_t u = 0; u < U; u++) {
            REAL t = sum[r * U + u];
            for (int64_t kk = k; kk < K; kk++) t += A[r * lda + kk] * b[u * bs + kk];
            C[r * ldc + u] = acc ? C[r * ldc + u] + t : t;
        }
}

/* C[i * ldc + u] (+)= A[i * lda ...] . Bm[u * bs ...] for i < M, u < n: for each DU rows of
 * Bm, while they are in L1, all the rows of A, DR at a time (the weights are read from memory once,
 * not once per row of A). A batch of one row takes D1 outputs at a time, as many chains in flight
 * as registers allow. */
void SFX(dots)(REAL *C, size_t ldc, const REAL *A, size_t lda, int64_t M, const REAL *Bm, size_t bs, int64_t n,
               int64_t K, int acc)
{
    int64_t u = 0;
    if (M == 1)
        for (; u + D1 <= n; u += D1) SFX(dot_tile)(1, D1, C + u, ldc, A, lda, Bm + u * bs, bs, K, acc);
    for (; u + DU <= n; u += DU) {
        int64_t i = 0;
        for (; i + DR <= M; i += DR) SFX(dot_tile)(DR, DU, C + i * ldc + u, ldc, A + i * lda, lda, Bm + u * bs, bs, K, acc);
        for (; i < M; i++) SFX(dot_tile)(1, DU, C + i * ldc + u, ldc, A + i * lda, lda, Bm + u * bs, bs, K, acc);
    }
    for (; u < n; u++)
        for (int64_t i = 0; i < M; i++) SFX(dot_tile)(1, 1, C + i * ldc + u, ldc, A + i * lda, lda, Bm + u * bs, bs, K, acc);
}

/* Rows [0, MRC) of C (+)= A B for B's rows contiguous (stride brs), MRC <= 8 after inlining: every
 * element is one chain of fused multiply-adds in k order, started from C (acc) or 0, held in a
 * register while B is read in place, NV vectors of columns at a time (NV = 8 / MRC, so that a block
 * of few rows still has eight independent chains in flight rather than waiting on one), then one
 * vector, then single columns. A column's chain is the same in every case, so a column gets the same
 * bits whichever block, or thread, computes it (the callers split columns at multiples of VL). */
static inline __attribute__((always_inline)) void SFX(row_vectors)(const int64_t MRC, const int64_t NV, REAL *C,
                                                                  size_t ldc, const REAL *A, size_t ars, size_t acs,
                                                                  const REAL *Bm, size_t brs, int64_t K, int acc)
{
    typedef VEC V;
    enum { VL = VL };
    V s[8][8];                  /* (MRC * NV <= 8 of them used) */
    for (int64_t i = 0; i < MRC; i++)
        for (int64_t v = 0; v < NV; v++) {
            s[i][v] = (V){0};
            if (acc) memcpy(&s[i][v], C + i * ldc + v * VL, sizeof(V));
        }
    for (int64_t k = 0; k < K; k++)
        for (int64_t v = 0; v < NV; v++) {
            V b;
            memcpy(&b, Bm + k * brs + v * VL, sizeof b);
            for (int64_t i = 0; i < MRC; i++) s[i][v] += A[i * ars + k * acs] * b;
        }
    for (int64_t i = 0; i < MRC; i++)
        for (int64_t v = 0; v < NV; v++) memcpy(C + i * ldc + v * VL, &s[i][v], sizeof(V));
}

static inline __attribute__((always_inline)) void SFX(row_block)(const int64_t MRC, REAL *C, size_t ldc, const REAL *A,
                                                                size_t ars, size_t acs, const REAL *Bm, size_t brs,
                                                                int64_t n, int64_t K, int acc)
{
    const int64_t NV = MRC >= 8 ? 1 : 8 / MRC;
    int64_t u = 0;
    for (; u + NV * VL <= n; u += NV * VL) SFX(row_vectors)(MRC, NV, C + u, ldc, A, ars, acs, Bm + u, brs, K, acc);
    for (; u + VL <= n; u += VL) SFX(row_vectors)(MRC, 1, C + u, ldc, A, ars, acs, Bm + u, brs, K, acc);
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
