/* Vanilla RNN, forward and backward (fastrnn.h):  h_t = g(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh),
 * g = tanh or relu (FR_RNN_TANH / FR_RNN_RELU). Compiled once per level and type (kernel.h).
 *
 * The time loop runs inside one OpenMP parallel region: each thread owns a slice of the hidden units,
 * packs its rows of w_hh once into its own buffer (a single step, T = 1, reads them in place), and
 * computes its slice of every step's recurrent product and activation; threads meet at one barrier
 * per step. Without BLAS the input projection is made inside the same region, a chunk of steps at a
 * time, and so are the weight gradients after the backward loop (loop.h). */
#include <string.h>

#include "gemm.h"
#include "loop.h"

/* ---- the activation of one row of a thread's units: h = g(a), a = xq + bias + s (xq: the row's input
 * projection at the thread's units, from xproj or the step's own XS; gru.c) ---------------------- */

static inline void SFX(rnn_tanh_row)(REAL *hb, REAL *ob, const REAL *xq, const REAL *bias, const REAL *Sb, int64_t j0,
                                     int64_t hs)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL h = TANH(xq[u] + bias[j] + Sb[u]);
        hb[j] = h;
        ob[j] = h;
    }
}

static inline void SFX(rnn_relu_row)(REAL *hb, REAL *ob, const REAL *xq, const REAL *bias, const REAL *Sb, int64_t j0,
                                     int64_t hs)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL a = xq[u] + bias[j] + Sb[u];
        REAL h = a > 0 ? a : (a <= 0 ? 0 : a);   /* relu that keeps NaN */
        hb[j] = h;
        ob[j] = h;
    }
}

/* ... and its gradient: da = (dh + d_out) g'(a), written to the recurrent (dgb) and input (dxb)
 * pre-activation gradients and added into both bias gradients (in step order, row by row); dh of
 * the row is then consumed (0), the next product adds into it. */

static inline void SFX(rnn_tanh_grad_row)(REAL *dgb, REAL *dxb, REAL *dhb, REAL *db_ih, REAL *db_hh,
                                          const REAL *hb, const REAL *dob, int64_t j0, int64_t hs)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL h = hb[j];
        REAL da = (dhb[j] + dob[j]) * (1 - h * h);
        dgb[j] = da;
        dxb[j] = da;
        dhb[j] = 0;
        db_ih[j] += da;
        db_hh[j] += da;
    }
}

static inline void SFX(rnn_relu_grad_row)(REAL *dgb, REAL *dxb, REAL *dhb, REAL *db_ih, REAL *db_hh,
                                          const REAL *hb, const REAL *dob, int64_t j0, int64_t hs)
{
#pragma omp simd
    for (int64_t u = 0; u < hs; u++) {
        int64_t j = j0 + u;
        REAL da = hb[j] <= 0 ? 0 : dhb[j] + dob[j];   /* torch's relu': NaN passes the gradient */
        dgb[j] = da;
        dxb[j] = da;
        dhb[j] = 0;
        db_ih[j] += da;
        db_hh[j] += da;
    }
}

int SFX(fr_rnn_forward)(REAL *out, REAL *h_n, REAL *states, REAL *xproj, const REAL *x, const REAL *h0,
                        const REAL *w_ih, const REAL *w_hh, const REAL *b_ih, const REAL *b_hh, const fr_layer *L,
                        GEMM_T gemm)
{
    const int64_t T = L->T, B = L->B, I = L->I, H = L->H;
    const int64_t *lengths = L->lengths;
    const int reverse = L->reverse, relu = L->variant == FR_RNN_RELU;
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
        const int nloop = fr_loop_threads(L, 1, UNITS);
        /* the input projection without BLAS: by blocks of steps (product 2) or by chunks of steps (loop.h) */
        const int64_t xsteps = gemm ? 0 : SFX(step_projection)(L, H);
        const int stepx = xsteps > 0;
        /* product 0: my units' rows of w_hh; product 2 (by blocks): the same of w_ih */
        const fr_loop_plan plan = {.nt = nloop, .pack = !gemm && !stepx, .direct = SFX(direct_step)(L, 1),
                                   .H = H, .B = B, .K = {H, 0, I}, .groups = {1, 0, stepx ? 1 : 0},
                                   .xsteps = xsteps};
#pragma omp parallel num_threads(fr_team_threads(L, nloop, gemm != NULL || stepx, H))
        {
            unsigned csr = fr_ftz_on();
            SFX(slice_t) sl;
            int phase = 0;
            /* P[0][k][c] = w_hh[j0 + c][k]; P[2] the same of w_ih */
            if (SFX(loop_begin)(&sl, &bar, &failed, &plan)) {
                SFX(slice_weights)(&sl, 0, w_hh, 0, H, 1);
                if (stepx) SFX(slice_weights)(&sl, 2, w_ih, 0, I, 1);
            }
#pragma omp barrier
            const int64_t j0 = sl.j0, hs = sl.hs, tc = stepx ? T : SFX(chunk_steps)(L);
            for (int64_t c0 = 0, c1; c0 < T && !failed; c0 = c1) {
                c1 = SFX(chunk_end)(c0, tc, T, B);
                if (!gemm && !stepx) SFX(project_steps)(xproj, x, w_ih, c0, c1, L, H, sl.PB);
                for (int64_t s = c0; s < c1 && hs > 0; s++) {
                    const REAL *hp = SFX(state_at)(states, pair, BH, s);
                    REAL *hnew = SFX(state_at)(states, pair, BH, s + 1);
                    if (stepx) SFX(project_step)(&sl, x, s, L);
                    SFX(slice_product)(&sl, 0, B, hp, H);
                    for (int64_t b = 0; b < B; b++) {
                        int64_t t = fr_time_index(s, b, T, lengths, reverse);
                        REAL *hb = hnew + (size_t)b * H;
                        if (t < 0) {
                            memcpy(hb + j0, hp + (size_t)b * H + j0, sizeof(REAL) * hs);
                            continue;
                        }
                        const REAL *xq = SFX(projection_row)(&sl, stepx, xproj, t, b, B, H);
                        const REAL *Sb = sl.S + (size_t)b * sl.np[0];
                        REAL *ob = out + ((size_t)t * B + b) * H;
                        if (relu)
                            SFX(rnn_relu_row)(hb, ob, xq, bias, Sb, j0, hs);
                        else
                            SFX(rnn_tanh_row)(hb, ob, xq, bias, Sb, j0, hs);
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
                         const REAL *w_ih, const REAL *w_hh, const fr_layer *L, GEMM_T gemm)
{
    const int64_t T = L->T, B = L->B, H = L->H;
    const int64_t *lengths = L->lengths;
    const int reverse = L->reverse, relu = L->variant == FR_RNN_RELU;
    const size_t BH = (size_t)B * H;
    REAL *dh = dh0;                       /* the running dL/dh of the current step */
    fr_copy(dh, d_hn, sizeof(REAL) * BH);
    if (T == 0 || BH == 0) {
        SFX(no_steps)(dx, dw_ih, dw_hh, db_ih, db_hh, L, H);
        return FR_OK;
    }
    /* the weight gradients' operands, with idle rows made finite where they are not (see finite_operands) */
    const REAL *xg = x, *sg = states;
    REAL *copies = NULL;
    if (lengths && SFX(finite_operands)(&xg, &sg, &copies, L)) return FR_ENOMEM;
    if (lengths && dgx != dgh) fr_zero(dgx, sizeof(REAL) * T * BH);
    const SFX(pregrads_t) pg = {.dgh = dgh, .dgx = dgx, .ld = (size_t)H, .xs = H, .x = xg, .states = sg, .split = H,
                                .w_ih = w_ih};
    int failed = 0;
    fr_barrier_t bar = {0};
    const int nloop = fr_loop_threads(L, 1, UNITS);
    const fr_loop_plan plan = {.nt = nloop, .pack = !gemm, .direct = SFX(direct_step)(L, 0), .H = H, .B = B,
                               .K = {H, 0, 0}, .groups = {1, 0, 0}};
#pragma omp parallel num_threads(fr_team_threads(L, nloop, gemm != NULL, H))
    {
        unsigned csr = fr_ftz_on();
        SFX(slice_t) sl;
        int phase = 0;
        /* P[0][k][c] = w_hh[k][j0 + c]: dh_{s-1}[:, my units] = dgh_s w_hh[:, my units] */
        REAL *dbi = NULL, *dbh = NULL;      /* this thread's copies of db_ih, db_hh (bias_grads_take) */
        if (SFX(loop_begin)(&sl, &bar, &failed, &plan)) {
            SFX(slice_weights)(&sl, 0, w_hh, 0, 1, H);
            if (sl.hs > 0 && !(dbi = SFX(bias_grads_take)(db_ih, db_hh, 1, H, sl.j0, sl.hs, L->overwrite))) {
#pragma omp atomic write
                failed = 1;
            }
            dbh = dbi ? dbi + H : NULL;
        }
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
                if (relu)
                    SFX(rnn_relu_grad_row)(dgb, dxb, dhb, dbi, dbh, hb, dob, j0, hs);
                else
                    SFX(rnn_tanh_grad_row)(dgb, dxb, dhb, dbi, dbh, hb, dob, j0, hs);
            }
            fr_barrier_wait(&bar, &phase);
            SFX(slice_product)(&sl, 0, B, dg, H);
            SFX(add_product)(dh, &sl, s, L);
        }
        if (!failed && hs > 0) SFX(bias_grads_give)(db_ih, db_hh, dbi, 1, H, j0, hs);
#pragma omp barrier
        if (!gemm && !failed)
            SFX(weight_gradients_par)(dx, dw_ih, dw_hh, &pg, L, H, sl.PB);
        fr_ftz_restore(csr);
    }
    int rc = failed ? FR_ENOMEM : FR_OK;
    if (!rc && gemm) rc = SFX(weight_gradients)(dx, dw_ih, dw_hh, &pg, L, H, gemm);
    return SFX(backward_end)(rc, copies, dx, L);
}
