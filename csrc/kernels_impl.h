/* The RNN and GRU kernels for one REAL type; fastrnn.c includes this file once per type with
 * REAL (float or double), SFX(name) (name##_f32 or name##_f64), GEMM_T, SIGMOID and TANH defined.
 * Buffer shapes and ownership: see fastrnn.h. */

#include "microkernel.h"

/* Row-major C[M,N] = alpha op(A) op(B) + beta C through the column-major Fortran gemm, whose sizes
 * are 32-bit ints: M and K are taken in pieces of at most FR_BLAS_MAX (the K pieces add into C), and
 * N and the leading dimensions must fit (FR_ETOOBIG otherwise; checked before anything is written). */
#define FR_BLAS_MAX ((int64_t)INT_MAX)
static int SFX(gemm_rm)(GEMM_T gemm, int ta, int tb, int64_t M, int64_t N, int64_t K, REAL alpha, const REAL *A,
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

/* The input projection of all steps, one GEMM: xproj[t, b, :] = x[t, b, :] w_ih^T (the biases are
 * added in the gate math, see input_bias). */
static int SFX(input_projection)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t TB, int64_t I, int64_t GH,
                                 GEMM_T gemm)
{
    return SFX(gemm_rm)(gemm, 0, 1, TB, GH, I, 1, x, I, w_ih, I, 0, xproj, GH);
}

/* The bias added to the input projection: b_ih + b_hh, except on rows [hh_from, hh_to) (GRU
 * reset_after: the n rows, whose b_hh stays inside r * (W_hn h + b_hn)). NULL when out of memory. */
static REAL *SFX(input_bias)(const REAL *b_ih, const REAL *b_hh, int64_t GH, int64_t hh_from, int64_t hh_to)
{
    REAL *bias = (REAL *)fr_buffer(FR_BUF_BIAS, sizeof(REAL) * GH);
    if (bias)
        for (int64_t c = 0; c < GH; c++) bias[c] = b_ih[c] + (c >= hh_from && c < hh_to ? 0 : b_hh[c]);
    return bias;
}

/* The weight and input gradients after the backward time loop, one GEMM each:
 *   dw_ih += dgx^T x,  dx = dgx w_ih,
 *   dw_hh[rows 0 .. split) += dgh[:, 0 .. split)^T states[0 .. T)
 *   dw_hh[rows split .. GH) += dgh[:, split .. GH)^T rh   (rh: rows of stride ld_rh; Cho GRU's r * h)
 */
static int SFX(weight_gradients)(REAL *dx, REAL *dw_ih, REAL *dw_hh, const REAL *dgh, const REAL *dgx,
                                 const REAL *x, const REAL *states, const REAL *rh, int64_t ld_rh,
                                 const REAL *w_ih, int64_t TB, int64_t I, int64_t H, int64_t GH, int64_t split,
                                 GEMM_T gemm)
{
    const int64_t M = TB;
    int rc = SFX(gemm_rm)(gemm, 1, 0, split, H, M, 1, dgh, GH, states, H, 1, dw_hh, H);
    if (!rc && split < GH)
        rc = SFX(gemm_rm)(gemm, 1, 0, GH - split, H, M, 1, dgh + split, GH, rh, ld_rh, 1, dw_hh + (size_t)split * H, H);
    if (!rc) rc = SFX(gemm_rm)(gemm, 1, 0, GH, I, M, 1, dgx, GH, x, I, 1, dw_ih, I);
    if (!rc) rc = SFX(gemm_rm)(gemm, 0, 0, M, I, GH, 1, dgx, GH, w_ih, I, 0, dx, I);
    return rc;
}

/* The same two steps with fastrnn's own packed GEMM, run by every thread of the loop's parallel
 * region (no second thread pool, and bitwise the same at any thread count). P: the calling thread's
 * packing buffer of pack_size() elements. */
static void SFX(input_projection_par)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t TB, int64_t I, int64_t GH,
                                      REAL *P)
{
    SFX(par_gemm)(TB, GH, I, x, I, 1, w_ih, 1, I, xproj, GH, 0, P);
#pragma omp barrier
}

/* The input projection is made a chunk of steps at a time, just before the loop reaches them, so that
 * it is still in cache when read (the whole of it, T B G H values, often is not). A chunk gives each
 * thread FR_CHUNK_ROWS rows of the product, enough to pay for packing w_ih again. Not with both
 * lengths and reverse, where one step reads different times for different sequences. */
#define FR_CHUNK_ROWS 1024
static int64_t SFX(chunk_steps)(int64_t T, int64_t B, const int64_t *lengths, int reverse)
{
    if (lengths && reverse) return T;
    int64_t tc = ((int64_t)FR_CHUNK_ROWS * omp_get_num_threads() + B - 1) / B;
    return tc < T ? tc : T;
}

/* The input projection of steps [s0, s1) (times [s0, s1), or [T - s1, T - s0) in reverse). */
static void SFX(project_steps)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t s0, int64_t s1, int64_t T, int64_t B,
                               int64_t I, int64_t GH, int reverse, REAL *P)
{
    const int64_t t0 = reverse ? T - s1 : s0;
    if (I == 0) {                        /* no inputs (x and w_ih may be NULL): a zero projection */
#pragma omp single
        fr_zero(xproj + (size_t)t0 * B * GH, sizeof(REAL) * (size_t)(s1 - s0) * B * GH);
        return;
    }
    SFX(input_projection_par)(xproj + (size_t)t0 * B * GH, x + (size_t)t0 * B * I, w_ih, (s1 - s0) * B, I,
                              GH, P);
}

static void SFX(weight_gradients_par)(REAL *dx, REAL *dw_ih, REAL *dw_hh, const REAL *dgh, const REAL *dgx,
                                      const REAL *x, const REAL *states, const REAL *rh, int64_t ld_rh,
                                      const REAL *w_ih, int64_t TB, int64_t I, int64_t H, int64_t GH, int64_t split, REAL *P)
{
    const int64_t M = TB;
    SFX(par_gemm)(split, H, M, dgh, 1, GH, states, H, 1, dw_hh, H, 1, P);
    if (split < GH) SFX(par_gemm)(GH - split, H, M, dgh + split, 1, GH, rh, ld_rh, 1, dw_hh + (size_t)split * H, H, 1, P);
    SFX(par_gemm)(GH, I, M, dgx, 1, GH, x, I, 1, dw_ih, I, 1, P);
    SFX(par_gemm)(M, I, GH, dgx, GH, 1, w_ih, I, 1, dx, I, 0, P);
}

/* Everything a thread of the time loop owns: its hidden units [j0, j1), its packed weights, one
 * step's product. */
typedef struct {
    const REAL *src;                   /* Bmat[k][c] = src[colbase(c) + k * kstride], see pack_panels */
    int64_t K, ngroups;
    size_t gstride, cstride, kstride;
} SFX(wview_t);

typedef struct {
    int64_t j0, hs;              /* first unit and number of units */
    int64_t np1, np2;            /* padded widths of P1 and P2 */
    REAL *P1, *P2, *S;       /* packed weights (K x np), and the product buffer (B x max np) */
    REAL *PB;                /* packing buffer of the big products (par_gemm), NULL with BLAS */
    int direct;              /* a single step: read the weights in place (w[0], w[1]) instead of packing */
    int rev[2];              /* sweep direction of the next product on P1 / P2, alternating (packed_gemm) */
    SFX(wview_t) w[2];
} SFX(slice_t);

/* Take the weights of product `which` (0: P1, 1: P2): pack them, or, for a single step, keep a view. */
static void SFX(slice_weights)(SFX(slice_t) *sl, int which, const REAL *src, int64_t K, int64_t ngroups, size_t gstride,
                               size_t cstride, size_t kstride)
{
    SFX(wview_t) w = {src, K, ngroups, gstride, cstride, kstride};
    sl->w[which] = w;
    if (!sl->direct)
        SFX(pack_panels)(which ? sl->P2 : sl->P1, src, K, ngroups, sl->hs, sl->j0, gstride, cstride, kstride,
                         which ? sl->np2 : sl->np1);
}

/* S[b, 0..ngroups*hs) = A[b, :] Bmat for product `which` (S's rows of stride np1 or np2). */
static void SFX(slice_product)(SFX(slice_t) *sl, int which, int64_t B, const REAL *A, size_t lda)
{
    const int64_t np = which ? sl->np2 : sl->np1, hs = sl->hs;
    if (hs == 0) return;
    if (!sl->direct) {
        SFX(packed_gemm)(B, np, sl->w[which].K, A, lda, which ? sl->P2 : sl->P1, sl->S, np, sl->rev[which]);
        sl->rev[which] ^= 1;
        return;
    }
    const SFX(wview_t) *w = &sl->w[which];
    for (int64_t g = 0; g < w->ngroups; g++) {
        const REAL *base = w->src + (size_t)g * w->gstride + (size_t)sl->j0 * w->cstride;
        REAL *o = sl->S + (size_t)g * hs;
        if (w->kstride == 1)            /* weight columns contiguous: dot products */
            SFX(dots)(o, np, A, lda, B, base, w->cstride, hs, w->K, 0);
        else                            /* weight rows contiguous: row updates */
            SFX(row_updates)(o, np, A, lda, 1, B, base, w->kstride, w->cstride, hs, w->K, 0);
    }
}

/* Allocate a thread's buffers: P1 (K1 x g1*hs), P2 (K2 x g2*hs, may be empty), S. Returns 0 on failure. */
static int SFX(slice_alloc)(SFX(slice_t) *sl, int nt, int direct, int pack, int64_t H, int64_t B, int64_t K1, int64_t g1, int64_t K2,
                           int64_t g2)
{
    sl->direct = direct;
    sl->rev[0] = sl->rev[1] = 0;
    if (direct) K1 = K2 = 0;     /* nothing to pack */
    const int64_t NR = SFX(NR);
    int tid = omp_get_thread_num();
    if (nt > omp_get_num_threads()) nt = omp_get_num_threads();
    fr_slice(H, nt, tid, SFX(UNITS), &sl->j0, &sl->hs);
    sl->np1 = (g1 * sl->hs + NR - 1) / NR * NR;
    sl->np2 = (g2 * sl->hs + NR - 1) / NR * NR;
    int64_t npmax = sl->np1 > sl->np2 ? sl->np1 : sl->np2;
    sl->P1 = (REAL *)fr_buffer(FR_BUF_P1, sizeof(REAL) * (size_t)K1 * sl->np1);
    sl->P2 = (REAL *)fr_buffer(FR_BUF_P2, sizeof(REAL) * (size_t)K2 * sl->np2);
    sl->S = (REAL *)fr_buffer(FR_BUF_S, sizeof(REAL) * (size_t)B * npmax);
    sl->PB = pack ? (REAL *)fr_buffer(FR_BUF_PACK, sizeof(REAL) * SFX(pack_size)()) : NULL;
    return sl->P1 && sl->P2 && sl->S && (sl->PB || !pack);
}

/* The start of every time loop, run by each thread of the parallel region: flush denormals, take
 * this thread's slice of hidden units and allocate its buffers (see slice_alloc), and let thread 0
 * size the per-step barrier. Returns 0 (and raises *failed for everyone) when out of memory. */
static int SFX(loop_begin)(SFX(slice_t) *sl, fr_barrier_t *bar, int *failed, int nt, int pack, int64_t T, int64_t H,
                           int64_t B, int64_t K1, int64_t g1, int64_t K2, int64_t g2)
{
    int ok = SFX(slice_alloc)(sl, nt, T == 1, pack, H, B, K1, g1, K2, g2);
    if (!ok) {
#pragma omp atomic write
        *failed = 1;
    }
    /* threads past the loop's share (nt < team size: the big products wanted more) own no units and
       skip the time loop; only the owners meet at its barrier */
    if (omp_get_thread_num() == 0) bar->n = nt < omp_get_num_threads() ? nt : omp_get_num_threads();
    return ok;
}

/* db[j] += v[j] over a thread's units: bias gradients summed in the loop, in step order. */
static inline void SFX(add_to)(REAL *db, const REAL *v, int64_t j0, int64_t hs)
{
#pragma omp simd
    for (int64_t j = j0; j < j0 + hs; j++) db[j] += v[j];
}

/* Where the forward keeps the state after step s - 1: in `states` (training), or, when `states` is
 * NULL (inference, no backward to come), in the two rows of `pair`, used in turn. */
static inline REAL *SFX(state_at)(REAL *states, REAL *pair, size_t BH, int64_t s)
{
    return states ? states + (size_t)s * BH : pair + (size_t)(s & 1) * BH;
}

/* The inference forward's two state rows (NULL when out of memory; see state_at). */
static REAL *SFX(state_pair)(REAL *states, size_t BH)
{
    return states ? NULL : (REAL *)fr_buffer(FR_BUF_STATE, sizeof(REAL) * 2 * BH);
}

/* 1 when the idle rows of `a` (rows of W values, row (i, b) idle for i >= len_b) are all finite. */
static int SFX(idle_rows_finite)(const REAL *a, const int64_t *lengths, int64_t T, int64_t B, int64_t W)
{
    int ok = 1;
    if (W == 0) return 1;                  /* nothing there (and `a` may be NULL) */
    for (int64_t b = 0; b < B && ok; b++)
        for (int64_t i = lengths[b]; i < T && ok; i++) {
            const REAL *r = a + ((size_t)i * B + b) * W;
            REAL acc = 0;
            for (int64_t j = 0; j < W; j++) acc += r[j] * 0;   /* NaN unless every value is finite */
            ok = acc == 0;
        }
    return ok;
}

static const REAL *SFX(zero_idle)(REAL *dst, const REAL *a, const int64_t *lengths, int64_t T, int64_t B, int64_t W)
{
    fr_copy(dst, a, sizeof(REAL) * (size_t)T * B * W);
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = lengths[b]; i < T; i++) fr_zero(dst + ((size_t)i * B + b) * W, sizeof(REAL) * W);
    return dst;
}

/* Idle rows (sequence b at index i >= len_b) of the weight gradients' operands: x (time-ordered rows)
 * and the states each step starts from (step-ordered). Their gradient rows are zero, but 0 * NaN or
 * 0 * Inf is NaN, so a non-finite value there (padding, or the state of a sequence with no valid step)
 * would reach dw_ih / dw_hh. Where there is one, *xg / *sg become copies with zeros in the idle rows
 * (in *copies, freed by backward_end). Returns FR_ENOMEM when a copy cannot be made. */
static int SFX(finite_operands)(const REAL **xg, const REAL **sg, REAL **copies, const int64_t *lengths,
                                int64_t T, int64_t B, int64_t I, int64_t H)
{
    int xok = SFX(idle_rows_finite)(*xg, lengths, T, B, I), sok = SFX(idle_rows_finite)(*sg, lengths, T, B, H);
    if (xok && sok) return FR_OK;
    const size_t nx = xok ? 0 : (size_t)T * B * I, ns = sok ? 0 : (size_t)T * B * H;
    *copies = (REAL *)fr_alloc(sizeof(REAL) * (nx + ns));
    if (!*copies) return FR_ENOMEM;
    if (!xok) *xg = SFX(zero_idle)(*copies, *xg, lengths, T, B, I);
    if (!sok) *sg = SFX(zero_idle)(*copies + nx, *sg, lengths, T, B, H);
    return FR_OK;
}

/* The end of a backward: free the copies of finite_operands, and zero dx at padded times (there the
 * product dgx w_ih is 0 * w_ih, NaN where w_ih is not finite; the reference leaves them 0). */
static int SFX(backward_end)(int rc, REAL *copies, REAL *dx, const int64_t *lengths, int64_t T, int64_t B, int64_t I)
{
    free(copies);
    if (!rc && lengths && I > 0)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = lengths[b]; t < T; t++) fr_zero(dx + ((size_t)t * B + b) * I, sizeof(REAL) * I);
    return rc;
}

/* ------------------------------------------------------------------------------------------------ */
/* Vanilla RNN:  h_t = g(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh),  g = tanh or relu                   */

int SFX(fr_rnn_forward)(REAL *out, REAL *h_n, REAL *states, REAL *xproj, const REAL *x, const REAL *h0,
                        const REAL *w_ih, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh,
                        const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu, int reverse,
                        int nthreads, GEMM_T gemm)
{
    const size_t BH = (size_t)B * H;
    REAL *pair = SFX(state_pair)(states, BH);
    if (!states && !pair) return FR_ENOMEM;
    fr_copy(SFX(state_at)(states, pair, BH, 0), h0, sizeof(REAL) * BH);
    if (T > 0 && BH > 0) {
        REAL *bias = SFX(input_bias)(b_ih, b_hh, H, 0, 0);
        if (!bias) return FR_ENOMEM;
        if (gemm && SFX(input_projection)(xproj, x, w_ih, T * B, I, H, gemm)) return FR_ETOOBIG;
        if (lengths) fr_zero(out, sizeof(REAL) * T * BH);
        int failed = 0;
        fr_barrier_t bar = {0};
        const int nloop = fr_loop_threads(nthreads, T, B, H, H, 1, SFX(UNITS));
#pragma omp parallel num_threads(fr_team(gemm ? nloop : fr_team_threads(nthreads, nloop, T, B, I, H)))
        {
            unsigned csr = fr_ftz_on();
            SFX(slice_t) sl;
            int phase = 0;
            /* P1[k][c] = w_hh[j0 + c][k]: my units' rows */
            if (SFX(loop_begin)(&sl, &bar, &failed, nloop, !gemm, T, H, B, H, 1, 0, 0))
                SFX(slice_weights)(&sl, 0, w_hh, H, 1, 0, H, 1);
#pragma omp barrier
            const int64_t j0 = sl.j0, hs = sl.hs, tc = SFX(chunk_steps)(T, B, lengths, reverse);
            for (int64_t c0 = 0; c0 < T && !failed; c0 += tc) {
                const int64_t c1 = c0 + tc < T ? c0 + tc : T;
                if (!gemm) SFX(project_steps)(xproj, x, w_ih, c0, c1, T, B, I, H, reverse, sl.PB);
                for (int64_t s = c0; s < c1 && hs > 0; s++) {
                    const REAL *hp = SFX(state_at)(states, pair, BH, s);
                    REAL *hnew = SFX(state_at)(states, pair, BH, s + 1);
                    SFX(slice_product)(&sl, 0, B, hp, H);
                    for (int64_t b = 0; b < B; b++) {
                        int64_t t = fr_time_index(s, b, T, lengths, reverse);
                        const REAL *hpb = hp + (size_t)b * H;
                        REAL *hb = hnew + (size_t)b * H;
                        if (t < 0) {
                            memcpy(hb + j0, hpb + j0, sizeof(REAL) * hs);
                            continue;
                        }
                        const REAL *xp = xproj + ((size_t)t * B + b) * H;
                        const REAL *Sb = sl.S + (size_t)b * sl.np1;
                        REAL *ob = out + ((size_t)t * B + b) * H;
                        if (relu) {
#pragma omp simd
                            for (int64_t u = 0; u < hs; u++) {
                                int64_t j = j0 + u;
                                REAL a = xp[j] + bias[j] + Sb[u];
                                REAL h = a > 0 ? a : (a <= 0 ? 0 : a);   /* relu that keeps NaN */
                                hb[j] = h;
                                ob[j] = h;
                            }
                        } else {
#pragma omp simd
                            for (int64_t u = 0; u < hs; u++) {
                                int64_t j = j0 + u;
                                REAL h = TANH(xp[j] + bias[j] + Sb[u]);
                                hb[j] = h;
                                ob[j] = h;
                            }
                        }
                    }
                    fr_barrier_wait(&bar, &phase);
                }
            }
            fr_ftz_restore(csr);
        }
        if (failed) return FR_ENOMEM;
    }
    fr_copy(h_n, SFX(state_at)(states, pair, BH, T), sizeof(REAL) * BH);
    return FR_OK;
}

int SFX(fr_rnn_backward)(REAL *dx, REAL *dh0, REAL *dw_ih, REAL *dw_hh, REAL *db_ih, REAL *db_hh, REAL *dgh,
                         REAL *dgx, const REAL *d_out, const REAL *d_hn, const REAL *x, const REAL *states,
                         const REAL *w_ih, const REAL *w_hh, const int64_t *lengths, int64_t T, int64_t B, int64_t I,
                         int64_t H, int relu, int reverse, int nthreads, GEMM_T gemm)
{
    const size_t BH = (size_t)B * H;
    REAL *dh = dh0;                       /* the running dL/dh of the current step */
    fr_copy(dh, d_hn, sizeof(REAL) * BH);
    if (T == 0 || BH == 0) {
        fr_zero(dx, sizeof(REAL) * (size_t)T * B * I);
        return FR_OK;
    }
    /* the weight gradients' operands, with idle rows made finite where they are not (see finite_operands) */
    const REAL *xg = x, *sg = states;
    REAL *copies = NULL;
    if (lengths && SFX(finite_operands)(&xg, &sg, &copies, lengths, T, B, I, H)) return FR_ENOMEM;
    if (lengths && dgx != dgh) fr_zero(dgx, sizeof(REAL) * T * BH);
    int failed = 0;
    fr_barrier_t bar = {0};
    const int nloop = fr_loop_threads(nthreads, T, B, H, H, 1, SFX(UNITS));
#pragma omp parallel num_threads(fr_team(gemm ? nloop : fr_team_threads(nthreads, nloop, T, B, I, H)))
    {
        unsigned csr = fr_ftz_on();
        SFX(slice_t) sl;
        int phase = 0;
        /* P1[k][c] = w_hh[k][j0 + c]: dh_{s-1}[:, my units] = dgh_s w_hh[:, my units] */
        if (SFX(loop_begin)(&sl, &bar, &failed, nloop, !gemm, T, H, B, H, 1, 0, 0))
            SFX(slice_weights)(&sl, 0, w_hh, H, 1, 0, 1, H);
#pragma omp barrier
        const int64_t j0 = sl.j0, hs = sl.hs;
        for (int64_t s = T - 1; s >= 0 && !failed && hs > 0; s--) {
            REAL *dg = dgh + s * BH;
            for (int64_t b = 0; b < B; b++) {
                int64_t t = fr_time_index(s, b, T, lengths, reverse);
                REAL *dgb = dg + (size_t)b * H;
                if (t < 0) {
                    memset(dgb + j0, 0, sizeof(REAL) * hs);
                    continue;
                }
                const REAL *hb = states + (s + 1) * BH + (size_t)b * H;
                const REAL *dob = d_out + ((size_t)t * B + b) * H;
                REAL *dxb = dgx + ((size_t)t * B + b) * H;
                REAL *dhb = dh + (size_t)b * H;
                if (relu) {
#pragma omp simd
                    for (int64_t u = 0; u < hs; u++) {
                        int64_t j = j0 + u;
                        REAL da = hb[j] <= 0 ? 0 : dhb[j] + dob[j];   /* torch's relu': NaN passes the gradient */
                        dgb[j] = da;
                        dxb[j] = da;
                        dhb[j] = 0;
                    }
                } else {
#pragma omp simd
                    for (int64_t u = 0; u < hs; u++) {
                        int64_t j = j0 + u;
                        REAL h = hb[j];
                        REAL da = (dhb[j] + dob[j]) * (1 - h * h);
                        dgb[j] = da;
                        dxb[j] = da;
                        dhb[j] = 0;
                    }
                }
                SFX(add_to)(db_hh, dgb, j0, hs);
                SFX(add_to)(db_ih, dgb, j0, hs);
            }
            fr_barrier_wait(&bar, &phase);
            if (hs > 0) {
                SFX(slice_product)(&sl, 0, B, dg, H);
                for (int64_t b = 0; b < B; b++) {
                    if (fr_time_index(s, b, T, lengths, reverse) < 0) continue;   /* idle: dh passes (0 * w may be NaN) */
                    for (int64_t u = 0; u < hs; u++) dh[(size_t)b * H + j0 + u] += sl.S[(size_t)b * sl.np1 + u];
                }
            }
        }
#pragma omp barrier
        if (!gemm && !failed)
            SFX(weight_gradients_par)(dx, dw_ih, dw_hh, dgh, dgx, xg, sg, NULL, 0, w_ih, T * B, I, H, H, H, sl.PB);
        fr_ftz_restore(csr);
    }
    int rc = failed ? FR_ENOMEM : FR_OK;
    if (!rc && gemm) rc = SFX(weight_gradients)(dx, dw_ih, dw_hh, dgh, dgx, xg, sg, NULL, 0, w_ih, T * B, I, H, H, H, gemm);
    return SFX(backward_end)(rc, copies, dx, lengths, T, B, I);
}

/* ------------------------------------------------------------------------------------------------ */
/* GRU, rows r, z, n (PyTorch):                                                                       */
/*   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)          */
/*   reset_after:  n = tanh(W_in x + b_in + r * (W_hn h + b_hn))                                      */
/*   otherwise:    n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)                                      */
/*   h' = (1 - z) * n + z * h                                                                         */

int SFX(fr_gru_forward)(REAL *out, REAL *h_n, REAL *states, REAL *gates, REAL *xproj, const REAL *x,
                        const REAL *h0, const REAL *w_ih, const REAL *w_hh, const REAL *b_ih,
                        const REAL *b_hh, const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int reset_after,
                        int reverse, int nthreads, GEMM_T gemm)
{
    const size_t BH = (size_t)B * H;
    const int64_t GH = 3 * H;
    REAL *pair = SFX(state_pair)(states, BH);
    /* inference (gates NULL): one step's gates, overwritten by the next */
    REAL *gstep = gates ? NULL : (REAL *)fr_buffer(FR_BUF_GATES, sizeof(REAL) * 4 * BH);
    if ((!states && !pair) || (!gates && !gstep)) return FR_ENOMEM;
    fr_copy(SFX(state_at)(states, pair, BH, 0), h0, sizeof(REAL) * BH);
    if (T > 0 && BH > 0) {
        /* b_hn stays inside r * (...) with reset_after; otherwise every b_hh joins the input bias */
        REAL *bias = SFX(input_bias)(b_ih, b_hh, GH, reset_after ? 2 * H : 0, reset_after ? GH : 0);
        if (!bias) return FR_ENOMEM;
        if (gemm && SFX(input_projection)(xproj, x, w_ih, T * B, I, GH, gemm)) return FR_ETOOBIG;
        if (lengths) fr_zero(out, sizeof(REAL) * T * BH);
        int failed = 0;
        fr_barrier_t bar = {0};
        const int nloop = fr_loop_threads(nthreads, T, B, H, H, 3, SFX(UNITS));
#pragma omp parallel num_threads(fr_team(gemm ? nloop : fr_team_threads(nthreads, nloop, T, B, I, GH)))
        {
            unsigned csr = fr_ftz_on();
            SFX(slice_t) sl;
            int phase = 0;
            /* reset_after: P1 = rows r, z, n of my units (one product per step);
               Cho: P1 = rows r, z (on h), P2 = rows n (on r * h, after a barrier) */
            int64_t g1 = reset_after ? 3 : 2, g2 = reset_after ? 0 : 1;
            if (SFX(loop_begin)(&sl, &bar, &failed, nloop, !gemm, T, H, B, H, g1, H, g2)) {
                SFX(slice_weights)(&sl, 0, w_hh, H, g1, (size_t)H * H, H, 1);
                if (g2) SFX(slice_weights)(&sl, 1, w_hh + (size_t)2 * H * H, H, 1, 0, H, 1);
            }
#pragma omp barrier
            const int64_t j0 = sl.j0, hs = sl.hs, ld = sl.np1, tc = SFX(chunk_steps)(T, B, lengths, reverse);
            const REAL *bx = bias, *b_hn = b_hh + 2 * H;
            for (int64_t c0 = 0; c0 < T && !failed; c0 += tc) {
                const int64_t c1 = c0 + tc < T ? c0 + tc : T;
                if (!gemm) SFX(project_steps)(xproj, x, w_ih, c0, c1, T, B, I, GH, reverse, sl.PB);
                for (int64_t s = c0; s < c1 && hs > 0; s++) {
                    const REAL *hp = SFX(state_at)(states, pair, BH, s);
                    REAL *hnew = SFX(state_at)(states, pair, BH, s + 1);
                    REAL *gs = gates ? gates + s * 4 * BH : gstep;
                    SFX(slice_product)(&sl, 0, B, hp, H);
                    for (int64_t b = 0; b < B; b++) {
                        int64_t t = fr_time_index(s, b, T, lengths, reverse);
                        const REAL *hpb = hp + (size_t)b * H;
                        REAL *g = gs + (size_t)b * 4 * H;
                        if (t < 0) {
                            memcpy(hnew + (size_t)b * H + j0, hpb + j0, sizeof(REAL) * hs);
                            /* the backward reads no gates of an idle row, but they are set (0) so that the
                               cache holds no uninitialised values (and the Cho GRU's r * h, which feeds a
                               GEMM, stays finite) */
                            for (int k = 0; k < 4; k++) fr_zero(g + k * H + j0, sizeof(REAL) * hs);
                            continue;
                        }
                        const REAL *xp = xproj + ((size_t)t * B + b) * GH;
                        const REAL *Sb = sl.S + (size_t)b * ld;
                        if (reset_after) {
                            REAL *hb = hnew + (size_t)b * H;
                            REAL *ob = out + ((size_t)t * B + b) * H;
#pragma omp simd
                            for (int64_t u = 0; u < hs; u++) {
                                int64_t j = j0 + u;
                                REAL r = SIGMOID(xp[j] + bx[j] + Sb[u]);
                                REAL z = SIGMOID(xp[H + j] + bx[H + j] + Sb[hs + u]);
                                REAL hn = Sb[2 * hs + u] + b_hn[j];
                                REAL n = TANH(xp[2 * H + j] + bx[2 * H + j] + r * hn);
                                REAL h = (1 - z) * n + z * hpb[j];
                                g[j] = r;
                                g[H + j] = z;
                                g[2 * H + j] = n;
                                g[3 * H + j] = hn;
                                hb[j] = h;
                                ob[j] = h;
                            }
                        } else {
#pragma omp simd
                            for (int64_t u = 0; u < hs; u++) {
                                int64_t j = j0 + u;
                                REAL r = SIGMOID(xp[j] + bx[j] + Sb[u]);
                                g[j] = r;
                                g[H + j] = SIGMOID(xp[H + j] + bx[H + j] + Sb[hs + u]);
                                g[3 * H + j] = r * hpb[j];
                            }
                        }
                    }
                    fr_barrier_wait(&bar, &phase);
                    if (reset_after) continue;
                    /* Cho GRU: the n gate needs r * h of every unit */
                    SFX(slice_product)(&sl, 1, B, gs + 3 * H, 4 * H);
                    for (int64_t b = 0; b < B; b++) {
                        int64_t t = fr_time_index(s, b, T, lengths, reverse);
                        if (t < 0) continue;
                        const REAL *hpb = hp + (size_t)b * H;
                        const REAL *xp = xproj + ((size_t)t * B + b) * GH;
                        const REAL *Sb = sl.S + (size_t)b * sl.np2;
                        REAL *g = gs + (size_t)b * 4 * H;
                        REAL *hb = hnew + (size_t)b * H;
                        REAL *ob = out + ((size_t)t * B + b) * H;
#pragma omp simd
                        for (int64_t u = 0; u < hs; u++) {
                            int64_t j = j0 + u;
                            REAL z = g[H + j];
                            REAL n = TANH(xp[2 * H + j] + bx[2 * H + j] + Sb[u]);
                            REAL h = (1 - z) * n + z * hpb[j];
                            g[2 * H + j] = n;
                            hb[j] = h;
                            ob[j] = h;
                        }
                    }
                    fr_barrier_wait(&bar, &phase);
                }
            }
            fr_ftz_restore(csr);
        }
        if (failed) return FR_ENOMEM;
    }
    fr_copy(h_n, SFX(state_at)(states, pair, BH, T), sizeof(REAL) * BH);
    return FR_OK;
}

int SFX(fr_gru_backward)(REAL *dx, REAL *dh0, REAL *dw_ih, REAL *dw_hh, REAL *db_ih, REAL *db_hh, REAL *dgh,
                         REAL *dgx, const REAL *d_out, const REAL *d_hn, const REAL *x, const REAL *states,
                         const REAL *gates, const REAL *w_ih, const REAL *w_hh, const int64_t *lengths, int64_t T,
                         int64_t B, int64_t I, int64_t H, int reset_after, int reverse, int nthreads, GEMM_T gemm)
{
    const size_t BH = (size_t)B * H;
    const int64_t GH = 3 * H;
    REAL *dh = dh0;                       /* the running dL/dh of the current step */
    fr_copy(dh, d_hn, sizeof(REAL) * BH);
    if (T == 0 || BH == 0) {
        fr_zero(dx, sizeof(REAL) * (size_t)T * B * I);
        return FR_OK;
    }
    /* the weight gradients' operands, with idle rows made finite where they are not (see finite_operands) */
    const REAL *xg = x, *sg = states;
    REAL *copies = NULL;
    if (lengths && SFX(finite_operands)(&xg, &sg, &copies, lengths, T, B, I, H)) return FR_ENOMEM;
    if (lengths) fr_zero(dgx, sizeof(REAL) * T * 3 * BH);
    int failed = 0;
    fr_barrier_t bar = {0};
    /* reset_after: P1[k][c] = w_hh[k][j0 + c], k < 3H: dh[:, my units] += dgh_s w_hh[:, my units]
       Cho: P1 = rows r, z (K = 2H) for dh; P2 = rows n (K = H) for d(r * h) */
    const int64_t K1 = reset_after ? GH : 2 * H, K2 = reset_after ? 0 : H;
    const int nloop = fr_loop_threads(nthreads, T, B, H, H, 3, SFX(UNITS));
#pragma omp parallel num_threads(fr_team(gemm ? nloop : fr_team_threads(nthreads, nloop, T, B, I, GH)))
    {
        unsigned csr = fr_ftz_on();
        SFX(slice_t) sl;
        int phase = 0;
        if (SFX(loop_begin)(&sl, &bar, &failed, nloop, !gemm, T, H, B, K1, 1, K2, K2 ? 1 : 0)) {
            SFX(slice_weights)(&sl, 0, w_hh, K1, 1, 0, 1, H);
            if (K2) SFX(slice_weights)(&sl, 1, w_hh + (size_t)2 * H * H, K2, 1, 0, 1, H);
        }
#pragma omp barrier
        const int64_t j0 = sl.j0, hs = sl.hs;
        for (int64_t s = T - 1; s >= 0 && !failed && hs > 0; s--) {
            const REAL *hp = states + s * BH;
            const REAL *gs = gates + s * 4 * BH;
            REAL *dg = dgh + s * 3 * BH;
            for (int64_t b = 0; b < B; b++) {
                int64_t t = fr_time_index(s, b, T, lengths, reverse);
                REAL *dgb = dg + (size_t)b * GH;
                if (t < 0) {
                    for (int64_t k = 0; k < 3; k++) memset(dgb + k * H + j0, 0, sizeof(REAL) * hs);
                    continue;
                }
                const REAL *hpb = hp + (size_t)b * H;
                const REAL *g = gs + (size_t)b * 4 * H;
                const REAL *dob = d_out + ((size_t)t * B + b) * H;
                REAL *dxb = dgx + ((size_t)t * B + b) * GH;
                REAL *dhb = dh + (size_t)b * H;
                if (reset_after) {
#pragma omp simd
                    for (int64_t u = 0; u < hs; u++) {
                        int64_t j = j0 + u;
                        REAL d = dhb[j] + dob[j];
                        REAL r = g[j], z = g[H + j], n = g[2 * H + j], hn = g[3 * H + j];
                        REAL dn = d * (1 - z) * (1 - n * n);
                        REAL dz = d * (hpb[j] - n) * z * (1 - z);
                        REAL dr = dn * hn * r * (1 - r);
                        dgb[j] = dr;
                        dgb[H + j] = dz;
                        dgb[2 * H + j] = dn * r;
                        dxb[j] = dr;
                        dxb[H + j] = dz;
                        dxb[2 * H + j] = dn;
                        dhb[j] = d * z;
                    }
                    for (int64_t k = 0; k < 3; k++) {
                        SFX(add_to)(db_hh + k * H, dgb + k * H, j0, hs);
                        SFX(add_to)(db_ih + k * H, dxb + k * H, j0, hs);
                    }
                } else {
#pragma omp simd
                    for (int64_t u = 0; u < hs; u++) {
                        int64_t j = j0 + u;
                        REAL d = dhb[j] + dob[j];
                        REAL z = g[H + j], n = g[2 * H + j];
                        REAL dn = d * (1 - z) * (1 - n * n);
                        REAL dz = d * (hpb[j] - n) * z * (1 - z);
                        dgb[H + j] = dz;
                        dgb[2 * H + j] = dn;
                        dxb[H + j] = dz;
                        dxb[2 * H + j] = dn;
                        dhb[j] = d * z;
                    }
                }
            }
            fr_barrier_wait(&bar, &phase);
            if (!reset_after) {
                /* d(r * h)[:, my units] = dn w_hn[:, my units]; then dr, and the r * d(r h) path to dh */
                SFX(slice_product)(&sl, 1, B, dg + 2 * H, GH);
                for (int64_t b = 0; b < B; b++) {
                    int64_t t = fr_time_index(s, b, T, lengths, reverse);
                    if (t < 0) continue;
                    const REAL *hpb = hp + (size_t)b * H;
                    const REAL *g = gs + (size_t)b * 4 * H;
                    const REAL *Sb = sl.S + (size_t)b * sl.np2;
                    REAL *dgb = dg + (size_t)b * GH;
                    REAL *dxb = dgx + ((size_t)t * B + b) * GH;
                    REAL *dhb = dh + (size_t)b * H;
#pragma omp simd
                    for (int64_t u = 0; u < hs; u++) {
                        int64_t j = j0 + u;
                        REAL r = g[j], drh = Sb[u];
                        REAL dr = drh * hpb[j] * r * (1 - r);
                        dgb[j] = dr;
                        dxb[j] = dr;
                        dhb[j] += drh * r;
                    }
                    for (int64_t k = 0; k < 3; k++) {   /* Cho: input and recurrent bias gradients agree */
                        SFX(add_to)(db_hh + k * H, dgb + k * H, j0, hs);
                        SFX(add_to)(db_ih + k * H, dgb + k * H, j0, hs);
                    }
                }
                fr_barrier_wait(&bar, &phase);
            }
            if (hs > 0) {
                SFX(slice_product)(&sl, 0, B, dg, GH);
                for (int64_t b = 0; b < B; b++) {
                    if (fr_time_index(s, b, T, lengths, reverse) < 0) continue;   /* idle: dh passes (0 * w may be NaN) */
                    for (int64_t u = 0; u < hs; u++) dh[(size_t)b * H + j0 + u] += sl.S[(size_t)b * sl.np1 + u];
                }
            }
        }
#pragma omp barrier
        if (!gemm && !failed)
            SFX(weight_gradients_par)(dx, dw_ih, dw_hh, dgh, dgx, xg, sg, gates + 3 * H, 4 * H, w_ih, T * B, I, H,
                                      GH, reset_after ? GH : 2 * H, sl.PB);
        fr_ftz_restore(csr);
    }
    int rc = failed ? FR_ENOMEM : FR_OK;
    if (!rc && gemm)
        rc = SFX(weight_gradients)(dx, dw_ih, dw_hh, dgh, dgx, xg, sg, gates + 3 * H, 4 * H, w_ih, T * B, I, H, GH,
                                   reset_after ? GH : 2 * H, gemm);
    return SFX(backward_end)(rc, copies, dx, lengths, T, B, I);
}
