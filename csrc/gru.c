/* GRU, forward and backward (fastrnn.h), rows r, z, n (PyTorch):
 *   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
 *   FR_GRU_RESET_AFTER:   n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
 *   FR_GRU_RESET_BEFORE:  n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)          (Cho et al.)
 *   h' = (1 - z) * n + z * h
 * Compiled once per level and type (kernel.h). The time loop is organised as rnn.c's: one parallel
 * region, a slice of hidden units per thread with its packed rows of w_hh, one barrier per step
 * (two for the reset-before variant, whose n needs r * h of every unit).
 *
 * The gates kept for the backward, per row: g[0..H) = r, g[H..2H) = z, g[2H..3H) = n, g[3H..4H) =
 * hn = W_hn h + b_hn (reset after) or rh = r * h (reset before). Below, xq is a row of the input
 * projection at the thread's units, its rows r, z, n xg apart (a row of xproj from j0: xg = H; of the
 * step's own projection XS: xg = hs), bx the input bias (loop.h: input_bias), S a row of this step's
 * recurrent product over the thread's units (rows r, z, n of its hs units side by side), hp the
 * previous state. */
#include <string.h>

#include "gemm.h"
#include "loop.h"

/* ---- the gate math of one row of a thread's units [j0, j0 + hs) -------------------------------- */

/* Reset after: the whole step from one product S = h (W_hr, W_hz, W_hn)^T; the gates are stored only
 * with `keep` (a constant after inlining): no backward reads those of an inference forward. Two
 * passes over chunks of FR_GATE_CHUNK units: r and z, then n and h'. In one pass a unit's chain
 * (sigmoid r, then tanh of what r gives) is long, and too few units' chains overlap; in two, each
 * pass's chains are half as long (AVX2, this row's loop alone at 64 units in L1: 0.75x the time). */
#define FR_GATE_CHUNK 64
static inline __attribute__((always_inline)) void SFX(gru_after_row)(REAL *hb, REAL *ob, REAL *g, const REAL *xq,
                                                                    int64_t xg, const REAL *bx, const REAL *b_hn,
                                                                    const REAL *S, const REAL *hp, int64_t j0,
                                                                    int64_t hs, int64_t H, const int keep)
{
    for (int64_t u0 = 0; u0 < hs; u0 += FR_GATE_CHUNK) {
        const int64_t m = hs - u0 < FR_GATE_CHUNK ? hs - u0 : FR_GATE_CHUNK;
        REAL za[FR_GATE_CHUNK], na[FR_GATE_CHUNK];   /* z, and tanh's argument */
#pragma omp simd
        for (int64_t v = 0; v < m; v++) {
            int64_t u = u0 + v, j = j0 + u;
            REAL r = SIGMOID(xq[u] + bx[j] + S[u]);
            REAL z = SIGMOID(xq[xg + u] + bx[H + j] + S[hs + u]);
            REAL hn = S[2 * hs + u] + b_hn[j];
            za[v] = z;
            na[v] = xq[2 * xg + u] + bx[2 * H + j] + r * hn;
            if (keep) {
                g[j] = r;
                g[H + j] = z;
                g[3 * H + j] = hn;
            }
        }
#pragma omp simd
        for (int64_t v = 0; v < m; v++) {
            int64_t j = j0 + u0 + v;
            REAL n = TANH(na[v]), z = za[v];
            REAL h = (1 - z) * n + z * hp[j];
            if (keep) g[2 * H + j] = n;
            hb[j] = h;
            ob[j] = h;
        }
    }
}

/* Reset before, first half: r, z and r * h from S = h (W_hr, W_hz)^T. */
static inline void SFX(gru_before_rz_row)(REAL *g, const REAL *xq, int64_t xg, const REAL *bx, const REAL *S,
                                          const REAL *hp, int64_t j0, int64_t hs, int64_t H)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL r = SIGMOID(xq[u] + bx[j] + S[u]);
        g[j] = r;
        g[H + j] = SIGMOID(xq[xg + u] + bx[H + j] + S[hs + u]);
        g[3 * H + j] = r * hp[j];
    }
}

/* Reset before, second half: n and h' from S = (r * h) W_hn^T. */
static inline void SFX(gru_before_n_row)(REAL *hb, REAL *ob, REAL *g, const REAL *xq, int64_t xg, const REAL *bx,
                                         const REAL *S, const REAL *hp, int64_t j0, int64_t hs, int64_t H)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL z = g[H + j];
        REAL n = TANH(xq[2 * xg + u] + bx[2 * H + j] + S[u]);
        REAL h = (1 - z) * n + z * hp[j];
        g[2 * H + j] = n;
        hb[j] = h;
        ob[j] = h;
    }
}

/* ---- and their gradients: d = dh + d_out of the row; dgb (recurrent) and dxb (input) get the
 * pre-activation gradients of rows r, z, n, and are added into the bias gradients db_hh and db_ih
 * (here, in the same pass: in step order, row by row); dh of the row becomes the part that passes
 * through z (the next product adds the rest). */

/* Reset after. With `wide` (a constant after inlining) dgb is a row of the shared buffer (fastrnn.h:
 * dgx == dgh), [dr | dz | dn * r | dn], and dxb is not used. */
static inline __attribute__((always_inline)) void SFX(gru_after_grad_row)(REAL *dgb, REAL *dxb, REAL *dhb, REAL *db_ih,
                                                                         REAL *db_hh, const REAL *g, const REAL *hp,
                                                                         const REAL *dob, int64_t j0, int64_t hs,
                                                                         int64_t H, const int wide)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL d = dhb[j] + dob[j];
        REAL r = g[j], z = g[H + j], n = g[2 * H + j], hn = g[3 * H + j];
        REAL dn = d * (1 - z) * (1 - n * n);
        REAL dz = d * (hp[j] - n) * z * (1 - z);
        REAL dr = dn * hn * r * (1 - r);
        dgb[j] = dr;
        dgb[H + j] = dz;
        dgb[2 * H + j] = dn * r;
        if (wide) {
            dgb[3 * H + j] = dn;
        } else {
            dxb[j] = dr;
            dxb[H + j] = dz;
            dxb[2 * H + j] = dn;
        }
        dhb[j] = d * z;
        db_hh[j] += dr;
        db_hh[H + j] += dz;
        db_hh[2 * H + j] += dn * r;
        db_ih[j] += dr;
        db_ih[H + j] += dz;
        db_ih[2 * H + j] += dn;
    }
}

/* Reset before, first half: z and n (r needs d(r * h), the product of dn with W_hn). */
static inline void SFX(gru_before_zn_grad_row)(REAL *dgb, REAL *dxb, REAL *dhb, const REAL *g, const REAL *hp,
                                               const REAL *dob, int64_t j0, int64_t hs, int64_t H)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL d = dhb[j] + dob[j];
        REAL z = g[H + j], n = g[2 * H + j];
        REAL dn = d * (1 - z) * (1 - n * n);
        REAL dz = d * (hp[j] - n) * z * (1 - z);
        dgb[H + j] = dz;
        dgb[2 * H + j] = dn;
        dxb[H + j] = dz;
        dxb[2 * H + j] = dn;
        dhb[j] = d * z;
    }
}

/* Reset before, second half: r from S = d(r * h) = dn W_hn, and the r * d(r * h) path to dh; then
 * the row's r, z, n gradients into both bias gradients (they agree in this variant). */
static inline void SFX(gru_before_r_grad_row)(REAL *dgb, REAL *dxb, REAL *dhb, REAL *db_ih, REAL *db_hh, const REAL *g,
                                              const REAL *hp, const REAL *S, int64_t j0, int64_t hs, int64_t H)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL r = g[j], drh = S[u];
        REAL dr = drh * hp[j] * r * (1 - r);
        REAL dz = dgb[H + j], dn = dgb[2 * H + j];
        dgb[j] = dr;
        dxb[j] = dr;
        dhb[j] += drh * r;
        db_hh[j] += dr;
        db_hh[H + j] += dz;
        db_hh[2 * H + j] += dn;
        db_ih[j] += dr;
        db_ih[H + j] += dz;
        db_ih[2 * H + j] += dn;
    }
}

int SFX(fr_gru_forward)(REAL *out, REAL *h_n, REAL *states, REAL *gates, REAL *xproj, const REAL *x,
                        const REAL *h0, const REAL *w_ih, const REAL *w_hh, const REAL *b_ih,
                        const REAL *b_hh, const fr_layer *L, GEMM_T gemm)
{
    const int64_t T = L->T, B = L->B, I = L->I, H = L->H;
    const int64_t *lengths = L->lengths;
    const int reverse = L->reverse, reset_after = L->variant == FR_GRU_RESET_AFTER;
    const size_t BH = (size_t)B * H;
    const int64_t GH = 3 * H;
    REAL *pair = SFX(state_pair)(states, BH);
    /* inference (gates NULL): the reset-before variant's step reads r * h and z back, so it keeps one
       step's gates, overwritten by the next; the reset-after variant keeps none */
    REAL *gstep = gates || reset_after ? NULL : (REAL *)fr_buffer(FR_BUF_GATES, sizeof(REAL) * 4 * BH);
    if ((!states && !pair) || (!gates && !reset_after && !gstep)) return FR_ENOMEM;
    fr_copy(SFX(state_at)(states, pair, BH, 0), h0, sizeof(REAL) * BH);
    if (T > 0 && BH > 0) {
        /* b_hn stays inside r * (...) with reset after; otherwise every b_hh joins the input bias */
        REAL *bias = SFX(input_bias)(b_ih, b_hh, GH, reset_after ? 2 * H : 0, reset_after ? GH : 0);
        if (!bias) return FR_ENOMEM;
        if (gemm && SFX(input_projection)(xproj, x, w_ih, T * B, I, GH, gemm)) return FR_ETOOBIG;
        if (lengths) fr_zero(out, sizeof(REAL) * T * BH);
        int failed = 0;
        fr_barrier_t bar = {0};
        const int nloop = fr_loop_threads(L, 3, UNITS);
        /* the input projection without BLAS: by blocks of steps (product 2) or by chunks of steps (loop.h) */
        const int64_t xsteps = gemm ? 0 : SFX(step_projection)(L, GH);
        const int stepx = xsteps > 0;
        /* reset after: product 0 = rows r, z, n of my units (one product per step);
           reset before: product 0 = rows r, z (on h), product 1 = rows n (on r * h, after a barrier);
           product 2 = my rows r, z, n of w_ih (by blocks) */
        const fr_loop_plan plan = {.nt = nloop, .pack = !gemm && !stepx, .direct = SFX(direct_step)(L, 1),
                                   .H = H, .B = B, .K = {H, H, I},
                                   .groups = {reset_after ? 3 : 2, reset_after ? 0 : 1, stepx ? 3 : 0},
                                   .xsteps = xsteps};
#pragma omp parallel num_threads(fr_team_threads(L, nloop, gemm != NULL || stepx, GH))
        {
            unsigned csr = fr_ftz_on();
            SFX(slice_t) sl;
            int phase = 0;
            if (SFX(loop_begin)(&sl, &bar, &failed, &plan)) {
                SFX(slice_weights)(&sl, 0, w_hh, (size_t)H * H, H, 1);
                if (!reset_after) SFX(slice_weights)(&sl, 1, w_hh + (size_t)2 * H * H, 0, H, 1);
                if (stepx) SFX(slice_weights)(&sl, 2, w_ih, (size_t)H * I, I, 1);
            }
#pragma omp barrier
            const int64_t j0 = sl.j0, hs = sl.hs, tc = stepx ? T : SFX(chunk_steps)(L);
            const int64_t xg = stepx ? hs : H;
            const REAL *bx = bias, *b_hn = b_hh + 2 * H;
            for (int64_t c0 = 0, c1; c0 < T && !failed; c0 = c1) {
                c1 = SFX(chunk_end)(c0, tc, T, B);
                if (!gemm && !stepx) SFX(project_steps)(xproj, x, w_ih, c0, c1, L, GH, sl.PB);
                for (int64_t s = c0; s < c1 && hs > 0; s++) {
                    const REAL *hp = SFX(state_at)(states, pair, BH, s);
                    REAL *hnew = SFX(state_at)(states, pair, BH, s + 1);
                    REAL *gs = gates ? gates + s * 4 * BH : gstep;   /* NULL: keep no gates */
                    if (stepx) SFX(project_step)(&sl, x, s, L);
                    SFX(slice_product)(&sl, 0, B, hp, H);
                    for (int64_t b = 0; b < B; b++) {
                        int64_t t = fr_time_index(s, b, T, lengths, reverse);
                        const REAL *hpb = hp + (size_t)b * H;
                        REAL *g = gs ? gs + (size_t)b * 4 * H : NULL;
                        if (t < 0) {
                            memcpy(hnew + (size_t)b * H + j0, hpb + j0, sizeof(REAL) * hs);
                            /* the backward reads no gates of an idle row, but they are set (0) so that the
                               cache holds no uninitialised values (and the reset-before r * h, which feeds
                               a GEMM, stays finite) */
                            if (g)
                                for (int k = 0; k < 4; k++) fr_zero(g + k * H + j0, sizeof(REAL) * hs);
                            continue;
                        }
                        const REAL *xq = SFX(projection_row)(&sl, stepx, xproj, t, b, B, GH);
                        const REAL *Sb = sl.S + (size_t)b * sl.np[0];
                        if (reset_after && g)
                            SFX(gru_after_row)(hnew + (size_t)b * H, out + ((size_t)t * B + b) * H, g, xq, xg, bx,
                                               b_hn, Sb, hpb, j0, hs, H, 1);
                        else if (reset_after)
                            SFX(gru_after_row)(hnew + (size_t)b * H, out + ((size_t)t * B + b) * H, NULL, xq, xg, bx,
                                               b_hn, Sb, hpb, j0, hs, H, 0);
                        else
                            SFX(gru_before_rz_row)(g, xq, xg, bx, Sb, hpb, j0, hs, H);
                    }
                    fr_barrier_wait(&bar, &phase);
                    if (reset_after) continue;
                    SFX(slice_product)(&sl, 1, B, gs + 3 * H, 4 * H);
                    for (int64_t b = 0; b < B; b++) {
                        int64_t t = fr_time_index(s, b, T, lengths, reverse);
                        if (t < 0) continue;
                        SFX(gru_before_n_row)(hnew + (size_t)b * H, out + ((size_t)t * B + b) * H, gs + (size_t)b * 4 * H,
                                              SFX(projection_row)(&sl, stepx, xproj, t, b, B, GH), xg, bx, sl.S + (size_t)b * sl.np[1], hp + (size_t)b * H, j0, hs, H);
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
                         const REAL *gates, const REAL *w_ih, const REAL *w_hh, const fr_layer *L, GEMM_T gemm)
{
    const int64_t T = L->T, B = L->B, H = L->H;
    const int64_t *lengths = L->lengths;
    const int reverse = L->reverse, reset_after = L->variant == FR_GRU_RESET_AFTER;
    const size_t BH = (size_t)B * H;
    const int64_t GH = 3 * H;
    REAL *dh = dh0;                       /* the running dL/dh of the current step */
    fr_copy(dh, d_hn, sizeof(REAL) * BH);
    if (T == 0 || BH == 0) {
        SFX(no_steps)(dx, dw_ih, dw_hh, db_ih, db_hh, L, GH);
        return FR_OK;
    }
    /* the weight gradients' operands, with idle rows made finite where they are not (see finite_operands) */
    const REAL *xg = x, *sg = states;
    REAL *copies = NULL;
    if (lengths && SFX(finite_operands)(&xg, &sg, &copies, L)) return FR_ENOMEM;
    if (lengths) fr_zero(dgx, sizeof(REAL) * T * 3 * BH);
    /* dgx == dgh (steps and times coincide, fastrnn.h): the input gradient's rows are the recurrent
       one's, and with reset after they are 4H wide, [dr | dz | dn * r | dn]: two thirds of the values
       the loop would write twice, written once */
    const int wide = dgx == dgh && reset_after;
    const int64_t ldg = wide ? 4 * H : GH;
    /* dw_hh's rows n multiply r * h (gates' last H columns) with reset before, h with reset after */
    const SFX(pregrads_t) pg = {.dgh = dgh, .dgx = dgx, .dgx_hi = wide ? dgh + 3 * H : NULL, .ld = (size_t)ldg,
                                .xs = 2 * H, .x = xg, .states = sg, .rh = gates + 3 * H, .ld_rh = (size_t)4 * H,
                                .split = reset_after ? GH : 2 * H, .w_ih = w_ih};
    int failed = 0;
    fr_barrier_t bar = {0};
    /* reset after: P[0][k][c] = w_hh[k][j0 + c], k < 3H: dh[:, my units] += dgh_s w_hh[:, my units]
       reset before: P[0] = rows r, z (K = 2H) for dh; P[1] = rows n (K = H) for d(r * h) */
    const int64_t K1 = reset_after ? GH : 2 * H, K2 = reset_after ? 0 : H;
    const int nloop = fr_loop_threads(L, 3, UNITS);
    const fr_loop_plan plan = {.nt = nloop, .pack = !gemm, .direct = SFX(direct_step)(L, 0), .H = H, .B = B,
                               .K = {K1, K2, 0}, .groups = {1, K2 ? 1 : 0, 0}};
#pragma omp parallel num_threads(fr_team_threads(L, nloop, gemm != NULL, GH))
    {
        unsigned csr = fr_ftz_on();
        SFX(slice_t) sl;
        int phase = 0;
        REAL *dbi = NULL, *dbh = NULL;      /* this thread's copies of db_ih, db_hh (bias_grads_take) */
        if (SFX(loop_begin)(&sl, &bar, &failed, &plan)) {
            SFX(slice_weights)(&sl, 0, w_hh, 0, 1, H);
            if (K2) SFX(slice_weights)(&sl, 1, w_hh + (size_t)2 * H * H, 0, 1, H);
            if (sl.hs > 0 && !(dbi = SFX(bias_grads_take)(db_ih, db_hh, 3, H, sl.j0, sl.hs, L->overwrite))) {
#pragma omp atomic write
                failed = 1;
            }
            dbh = dbi ? dbi + GH : NULL;
        }
#pragma omp barrier
        const int64_t j0 = sl.j0, hs = sl.hs;
        for (int64_t s = T - 1; s >= 0 && !failed && hs > 0; s--) {
            const REAL *hp = states + s * BH;
            const REAL *gs = gates + s * 4 * BH;
            REAL *dg = dgh + (size_t)s * B * ldg;
            for (int64_t b = 0; b < B; b++) {
                int64_t t = fr_time_index(s, b, T, lengths, reverse);
                REAL *dgb = dg + (size_t)b * ldg;
#ifdef FR_BPD
                if (b + FR_BPD < B) {
                    const int64_t bn = b + FR_BPD, tn = fr_time_index(s, bn, T, lengths, reverse);
                    if (tn >= 0) {
                        const REAL *gn = gs + (size_t)bn * 4 * H + j0, *hn_ = hp + (size_t)bn * H + j0,
                                   *on = d_out + ((size_t)tn * B + bn) * H + j0;
                        for (int64_t o = 0; o < hs; o += 64 / (int64_t)sizeof(REAL)) {
                            for (int k = 0; k < 4; k++) __builtin_prefetch(gn + k * H + o, 0, 3);
                            __builtin_prefetch(hn_ + o, 0, 3);
                            __builtin_prefetch(on + o, 0, 3);
                        }
                    }
                }
#endif
                if (t < 0) {
                    for (int64_t k = 0; k < 3; k++) memset(dgb + k * H + j0, 0, sizeof(REAL) * hs);
                    continue;
                }
                const REAL *hpb = hp + (size_t)b * H, *g = gs + (size_t)b * 4 * H;
                const REAL *dob = d_out + ((size_t)t * B + b) * H;
                REAL *dxb = dgx + ((size_t)t * B + b) * GH;
                if (wide)
                    SFX(gru_after_grad_row)(dgb, dgb, dh + (size_t)b * H, dbi, dbh, g, hpb, dob, j0, hs, H, 1);
                else if (reset_after)
                    SFX(gru_after_grad_row)(dgb, dxb, dh + (size_t)b * H, dbi, dbh, g, hpb, dob, j0, hs, H, 0);
                else
                    SFX(gru_before_zn_grad_row)(dgb, dxb, dh + (size_t)b * H, g, hpb, dob, j0, hs, H);
            }
            fr_barrier_wait(&bar, &phase);
            if (!reset_after) {
                /* d(r * h)[:, my units] = dn w_hn[:, my units]; then dr, and the r * d(r h) path to dh */
                SFX(slice_product)(&sl, 1, B, dg + 2 * H, ldg);
                for (int64_t b = 0; b < B; b++) {
                    int64_t t = fr_time_index(s, b, T, lengths, reverse);
                    if (t < 0) continue;
                    SFX(gru_before_r_grad_row)(dg + (size_t)b * ldg, dgx + ((size_t)t * B + b) * GH, dh + (size_t)b * H,
                                               dbi, dbh, gs + (size_t)b * 4 * H, hp + (size_t)b * H,
                                               sl.S + (size_t)b * sl.np[1], j0, hs, H);
                }
                fr_barrier_wait(&bar, &phase);
            }
            SFX(slice_product)(&sl, 0, B, dg, ldg);
            SFX(add_product)(dh, &sl, s, L);
        }
        if (!failed && hs > 0) SFX(bias_grads_give)(db_ih, db_hh, dbi, 3, H, j0, hs);
#pragma omp barrier
        if (!gemm && !failed)
            SFX(weight_gradients_par)(dx, dw_ih, dw_hh, &pg, L, GH, sl.PB);
        fr_ftz_restore(csr);
    }
    int rc = failed ? FR_ENOMEM : FR_OK;
    if (!rc && gemm)
        rc = SFX(weight_gradients)(dx, dw_ih, dw_hh, &pg, L, GH, gemm);
    return SFX(backward_end)(rc, copies, dx, L);
}
