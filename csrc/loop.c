/* What the time loops of rnn.c and gru.c share (declared, with what each does, in loop.h). Compiled
 * once per level and type (kernel.h). */
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "loop.h"

int SFX(input_projection)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t TB, int64_t I, int64_t GH,
                          GEMM_T gemm)
{
    return SFX(gemm_rm)(gemm, 0, 1, TB, GH, I, 1, x, I, w_ih, I, 0, xproj, GH);
}

REAL *SFX(input_bias)(const REAL *b_ih, const REAL *b_hh, int64_t GH, int64_t hh_from, int64_t hh_to)
{
    REAL *bias = (REAL *)fr_buffer(FR_BUF_BIAS, sizeof(REAL) * GH);
    if (bias)
        for (int64_t c = 0; c < GH; c++) bias[c] = b_ih[c] + (c >= hh_from && c < hh_to ? 0 : b_hh[c]);
    return bias;
}

REAL *SFX(bias_grads_take)(const REAL *db_ih, const REAL *db_hh, int64_t ngroups, int64_t H, int64_t j0, int64_t hs,
                           int overwrite)
{
    const size_t n = (size_t)ngroups * H;
    REAL *mine = (REAL *)fr_buffer(FR_BUF_DB, sizeof(REAL) * 2 * n);
    if (mine && overwrite)
        for (int64_t g = 0; g < ngroups; g++) {
            fr_zero(mine + g * H + j0, sizeof(REAL) * hs);
            fr_zero(mine + n + g * H + j0, sizeof(REAL) * hs);
        }
    else if (mine)
        for (int64_t g = 0; g < ngroups; g++) {
            fr_copy(mine + g * H + j0, db_ih + g * H + j0, sizeof(REAL) * hs);
            fr_copy(mine + n + g * H + j0, db_hh + g * H + j0, sizeof(REAL) * hs);
        }
    return mine;
}

void SFX(bias_grads_give)(REAL *db_ih, REAL *db_hh, const REAL *mine, int64_t ngroups, int64_t H, int64_t j0,
                          int64_t hs)
{
    const size_t n = (size_t)ngroups * H;
    for (int64_t g = 0; g < ngroups; g++) {
        fr_copy(db_ih + g * H + j0, mine + g * H + j0, sizeof(REAL) * hs);
        fr_copy(db_hh + g * H + j0, mine + n + g * H + j0, sizeof(REAL) * hs);
    }
}

void SFX(no_steps)(REAL *dx, REAL *dw_ih, REAL *dw_hh, REAL *db_ih, REAL *db_hh, const fr_layer *L, int64_t GH)
{
    fr_zero(dx, sizeof(REAL) * (size_t)L->T * L->B * L->I);
    if (!L->overwrite) return;
    fr_zero(dw_ih, sizeof(REAL) * (size_t)GH * L->I);
    fr_zero(dw_hh, sizeof(REAL) * (size_t)GH * L->H);
    fr_zero(db_ih, sizeof(REAL) * (size_t)GH);
    fr_zero(db_hh, sizeof(REAL) * (size_t)GH);
}

int SFX(weight_gradients)(REAL *dx, REAL *dw_ih, REAL *dw_hh, const SFX(pregrads_t) *g, const fr_layer *L,
                          int64_t GH, GEMM_T gemm)
{
    const int64_t M = L->T * L->B, I = L->I, H = L->H, ld = (int64_t)g->ld, xs = g->dgx_hi ? g->xs : GH;
    const int64_t split = g->split, ld_rh = (int64_t)g->ld_rh;
    const REAL *x = g->x, *states = g->states, *rh = g->rh, *w_ih = g->w_ih;
    const REAL beta = L->overwrite ? 0 : 1;     /* (each product below fills rows of its own) */
    int rc = SFX(gemm_rm)(gemm, 1, 0, split, H, M, 1, g->dgh, ld, states, H, beta, dw_hh, H);
    if (!rc && split < GH)
        rc = SFX(gemm_rm)(gemm, 1, 0, GH - split, H, M, 1, g->dgh + split, ld, rh, ld_rh, beta, dw_hh + (size_t)split * H, H);
    if (!rc) rc = SFX(gemm_rm)(gemm, 1, 0, xs, I, M, 1, g->dgx, ld, x, I, beta, dw_ih, I);
    if (!rc) rc = SFX(gemm_rm)(gemm, 0, 0, M, I, xs, 1, g->dgx, ld, w_ih, I, 0, dx, I);
    if (!rc && xs < GH)
        rc = SFX(gemm_rm)(gemm, 1, 0, GH - xs, I, M, 1, g->dgx_hi, ld, x, I, beta, dw_ih + (size_t)xs * I, I);
    if (!rc && xs < GH)
        rc = SFX(gemm_rm)(gemm, 0, 0, M, I, GH - xs, 1, g->dgx_hi, ld, w_ih + (size_t)xs * I, I, 1, dx, I);
    return rc;
}

/* The input projection of TB rows by every thread of the region, then a barrier (the loop reads
 * every row). */
static void SFX(input_projection_par)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t TB, int64_t I, int64_t GH,
                                      REAL *P)
{
    SFX(par_gemm)(TB, GH, I, x, I, 1, w_ih, 1, I, xproj, GH, 0, P);
#pragma omp barrier
}

/* A single step reads the weights in place (dots / row_updates) up to FR_DIRECT_BATCH rows, and a
 * forward also while I + H is at least FR_DIRECT_ROW_TERMS times B; past that, packing them
 * for the register-blocked kernel pays even for one step. Measured (T = 1, 2 threads, AVX-512,
 * benches.ab, in place against packed), GRU inference: I = H = 256, B = 24 0.85x, B = 32 0.93x,
 * B = 64 1.16x (packing pays); I = H = 512, B = 32 0.69x, 48 0.75x, 64 0.86x, 96 0.99x; I = H = 1024,
 * B = 32 0.35x, 64 0.68x, 128 0.79x, 256 1.01x (packing 12 MiB weights costs more than their product
 * saves); RNN I = H = 512, B = 64 0.88x; I = H = 1024, B = 64 0.79x, 128 0.97x. AVX2, GRU I = H =
 * 256: B = 32 0.98x, B = 64 1.12x. The backward (its products with the weights' rows, row_updates)
 * in place against packed, B = 32: I = H = 256 0.91x, 512 1.00x, 1024 1.02x; B = 64, 512: 1.13x. */
#define FR_DIRECT_BATCH 32
#define FR_DIRECT_ROW_TERMS 16

/* The input projection is made a chunk of steps at a time, just before the loop reaches them, so that
 * it is still in cache when read (the whole of it, T B G H values, often is not). A chunk gives each
 * thread FR_CHUNK_ROWS rows of the product, enough to pay for packing w_ih again. Not with both
 * lengths and reverse, where one step reads different times for different sequences. */
#define FR_CHUNK_ROWS 1024
#define FR_STEPX_ROWS 32
#define FR_STEPX_MAX_BYTES ((size_t)2 << 20)
int64_t SFX(step_projection)(const fr_layer *L, int64_t GH)
{
    const int64_t T = L->T, B = L->B, I = L->I;
    if (I == 0 || (L->lengths && L->reverse)) return 0;
    if (T == 1) return 1;       /* one step: nothing to keep in cache; each thread reads (or packs) only its rows */
    if ((size_t)I * (size_t)GH * sizeof(REAL) > FR_STEPX_MAX_BYTES) return 0;
    const int64_t steps = (FR_STEPX_ROWS + B - 1) / B;
    return steps < T ? steps : T;
}

int64_t SFX(chunk_steps)(const fr_layer *L)
{
    const int64_t T = L->T, B = L->B;
    if (L->lengths && L->reverse) return T;
    int64_t tc = ((int64_t)FR_CHUNK_ROWS * omp_get_num_threads() + B - 1) / B;
    return tc < T ? tc : T;
}

void SFX(project_steps)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t s0, int64_t s1, const fr_layer *L,
                        int64_t GH, REAL *P)
{
    const int64_t B = L->B, I = L->I, t0 = L->reverse ? L->T - s1 : s0;
    if (I == 0) {                        /* no inputs (x and w_ih may be NULL): a zero projection */
#pragma omp single
        fr_zero(xproj + (size_t)t0 * B * GH, sizeof(REAL) * (size_t)(s1 - s0) * B * GH);
        return;
    }
    SFX(input_projection_par)(xproj + (size_t)t0 * B * GH, x + (size_t)t0 * B * I, w_ih, (s1 - s0) * B, I,
                              GH, P);
}

void SFX(weight_gradients_par)(REAL *dx, REAL *dw_ih, REAL *dw_hh, const SFX(pregrads_t) *g, const fr_layer *L,
                               int64_t GH, REAL *P)
{
    const int64_t M = L->T * L->B, I = L->I, H = L->H, xs = g->dgx_hi ? g->xs : GH, split = g->split;
    const size_t ld = g->ld, ld_rh = g->ld_rh;
    const REAL *x = g->x, *states = g->states, *rh = g->rh, *w_ih = g->w_ih;
    const int acc = !L->overwrite;              /* (each product below fills rows of its own) */
    SFX(par_gemm)(split, H, M, g->dgh, 1, ld, states, H, 1, dw_hh, H, acc, P);
    if (split < GH) SFX(par_gemm)(GH - split, H, M, g->dgh + split, 1, ld, rh, ld_rh, 1, dw_hh + (size_t)split * H, H, acc, P);
    SFX(par_gemm)(xs, I, M, g->dgx, 1, ld, x, I, 1, dw_ih, I, acc, P);
    if (xs < GH) SFX(par_gemm)(GH - xs, I, M, g->dgx_hi, 1, ld, x, I, 1, dw_ih + (size_t)xs * I, I, acc, P);
    SFX(par_gemm)(M, I, xs, g->dgx, ld, 1, w_ih, I, 1, dx, I, 0, P);
    if (xs < GH) {
        /* the second product adds into rows of dx that, with another K, par_gemm may give to another thread */
#pragma omp barrier
        SFX(par_gemm)(M, I, GH - xs, g->dgx_hi, ld, 1, w_ih + (size_t)xs * I, I, 1, dx, I, 1, P);
    }
}

void SFX(slice_weights)(SFX(slice_t) *sl, int which, const REAL *src, size_t gstride, size_t cstride,
                        size_t kstride)
{
    SFX(wview_t) *w = &sl->w[which];
    w->src = src;
    w->gstride = gstride;
    w->cstride = cstride;
    w->kstride = kstride;
    if (!sl->direct)
        SFX(pack_panels)(sl->P[which], src, w->K, w->ngroups, sl->hs, sl->j0, gstride, cstride, kstride,
                         sl->np[which]);
}

void SFX(slice_product)(SFX(slice_t) *sl, int which, int64_t B, const REAL *A, size_t lda)
{
    const int64_t np = sl->np[which], hs = sl->hs;
    REAL *out = which == 2 ? sl->XS : sl->S;
    if (hs == 0) return;
    if (!sl->direct) {
        SFX(packed_gemm)(B, np, sl->w[which].K, A, lda, sl->P[which], out, np, sl->rev[which]);
        sl->rev[which] ^= 1;
        return;
    }
    const SFX(wview_t) *w = &sl->w[which];
    for (int64_t g = 0; g < w->ngroups; g++) {
        const REAL *base = w->src + (size_t)g * w->gstride + (size_t)sl->j0 * w->cstride;
        REAL *o = out + (size_t)g * hs;
        if (w->kstride == 1)            /* weight columns contiguous: dot products */
            SFX(dots)(o, np, A, lda, B, base, w->cstride, hs, w->K, 0);
        else                            /* weight rows contiguous: row updates */
            SFX(row_updates)(o, np, A, lda, 1, B, base, w->kstride, w->cstride, hs, w->K, 0);
    }
}

void SFX(add_product)(REAL *dh, const SFX(slice_t) *sl, int64_t s, const fr_layer *L)
{
    const int64_t B = L->B, H = L->H;
    for (int64_t b = 0; b < B; b++) {
        if (fr_time_index(s, b, L->T, L->lengths, L->reverse) < 0) continue;
        REAL *d = dh + (size_t)b * H + sl->j0;
        const REAL *p = sl->S + (size_t)b * sl->np[0];
        for (int64_t u = 0; u < sl->hs; u++) d[u] += p[u];
    }
}

static int SFX(slice_alloc)(SFX(slice_t) *sl, const fr_loop_plan *plan)
{
    static const int bufs[3] = {FR_BUF_P1, FR_BUF_P2, FR_BUF_P3};
    int nt = plan->nt, ok = 1;
    sl->direct = plan->direct;
    sl->xsteps = plan->xsteps;
    sl->xt0 = sl->xend = 0;
    if (nt > omp_get_num_threads()) nt = omp_get_num_threads();
    fr_slice(plan->H, nt, omp_get_thread_num(), UNITS, &sl->j0, &sl->hs);
    for (int p = 0; p < 3; p++) {
        SFX(wview_t) w = {NULL, plan->K[p], plan->groups[p], 0, 0, 0};
        sl->w[p] = w;
        sl->rev[p] = 0;
        sl->np[p] = (plan->groups[p] * sl->hs + NR - 1) / NR * NR;
        /* in place (direct): nothing to pack */
        sl->P[p] = (REAL *)fr_buffer(bufs[p], sizeof(REAL) * (size_t)(plan->direct ? 0 : plan->K[p]) * sl->np[p]);
        ok = ok && sl->P[p];
    }
    const int64_t npmax = sl->np[0] > sl->np[1] ? sl->np[0] : sl->np[1];
    sl->S = (REAL *)fr_buffer(FR_BUF_S, sizeof(REAL) * (size_t)plan->B * npmax);
    sl->XS = (REAL *)fr_buffer(FR_BUF_XS, sizeof(REAL) * (size_t)plan->xsteps * plan->B * sl->np[2]);
    sl->PB = plan->pack ? (REAL *)fr_buffer(FR_BUF_PACK, sizeof(REAL) * SFX(pack_size)()) : NULL;
    return ok && sl->S && sl->XS && (sl->PB || !plan->pack);
}

int SFX(direct_step)(const fr_layer *L, int forward)
{
    const int64_t B = L->B;
    return L->T == 1 && (B <= FR_DIRECT_BATCH || (forward && B * FR_DIRECT_ROW_TERMS <= L->I + L->H));
}

int SFX(loop_begin)(SFX(slice_t) *sl, fr_barrier_t *bar, int *failed, const fr_loop_plan *plan)
{
    const int nt = plan->nt, ok = SFX(slice_alloc)(sl, plan);
    if (!ok) {
#pragma omp atomic write
        *failed = 1;
    }
    /* threads past the loop's share (nt < team size: the big products wanted more) own no units and
       skip the time loop; only the owners meet at its barrier */
    if (omp_get_thread_num() == 0) bar->n = nt < omp_get_num_threads() ? nt : omp_get_num_threads();
    return ok;
}

REAL *SFX(state_pair)(REAL *states, size_t BH)
{
    return states ? NULL : (REAL *)fr_buffer(FR_BUF_STATE, sizeof(REAL) * 2 * BH);
}

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

int SFX(finite_operands)(const REAL **xg, const REAL **sg, REAL **copies, const fr_layer *L)
{
    const int64_t T = L->T, B = L->B, I = L->I, H = L->H;
    const int64_t *lengths = L->lengths;
    int xok = SFX(idle_rows_finite)(*xg, lengths, T, B, I), sok = SFX(idle_rows_finite)(*sg, lengths, T, B, H);
    if (xok && sok) return FR_OK;
    const size_t nx = xok ? 0 : (size_t)T * B * I, ns = sok ? 0 : (size_t)T * B * H;
    *copies = (REAL *)fr_alloc(sizeof(REAL) * (nx + ns));
    if (!*copies) return FR_ENOMEM;
    if (!xok) *xg = SFX(zero_idle)(*copies, *xg, lengths, T, B, I);
    if (!sok) *sg = SFX(zero_idle)(*copies + nx, *sg, lengths, T, B, H);
    return FR_OK;
}

int SFX(backward_end)(int rc, REAL *copies, REAL *dx, const fr_layer *L)
{
    const int64_t T = L->T, B = L->B, I = L->I;
    const int64_t *lengths = L->lengths;
    free(copies);
    if (!rc && lengths && I > 0)
        for (int64_t b = 0; b < B; b++)
            for (int64_t t = lengths[b]; t < T; t++) fr_zero(dx + ((size_t)t * B + b) * I, sizeof(REAL) * I);
    return rc;
}
