/* What the time loops of rnn.c and gru.c share (loop.c), for one level and type (kernel.h): a
 * thread's slice of hidden units with its packed weights, the input projection by blocks or chunks of steps,
 * the weight gradients after a backward loop, the inference forward's two states, and the idle rows
 * of padded batches. Buffer names and shapes as in fastrnn.h. */
#ifndef FASTRNN_LOOP_H
#define FASTRNN_LOOP_H

#include "kernel.h"
#include "gemm.h"

/* A view of weights as a K x (ngroups * hs) matrix: Bmat[k][c] = src[colbase(c) + k * kstride] (gemm.h:
 * pack_panels). */
typedef struct {
    const REAL *src;
    int64_t K, ngroups;
    size_t gstride, cstride, kstride;
} SFX(wview_t);

/* What a time loop asks of loop_begin, the same for each of its threads. Product p (0, 1, 2) is a
 * thread's packed weights P[p], K[p] rows by groups[p] groups of the thread's units (groups[p] = 0:
 * no such product). Products 0 and 1 are on the recurrent weights and go to S (B rows); product 2, the
 * forward's input projection made by blocks of xsteps steps (step_projection; xsteps = 0: none), is
 * on the thread's rows of w_ih and goes to XS (xsteps * B rows). */
typedef struct {
    int nt;                     /* threads that own units (fr_loop_threads); any others skip the loop */
    int pack;                   /* 1: the big products' packing buffer too (par_gemm, no BLAS) */
    int direct;                 /* direct_step: read the weights in place instead of packing them */
    int64_t H, B;               /* hidden units, batch rows */
    int64_t K[3], groups[3];    /* each product's weight rows and groups */
    int64_t xsteps;             /* steps per block of product 2 */
} fr_loop_plan;

/* Everything a thread of a time loop owns: its hidden units [j0, j0 + hs), its packed weights, one
 * step's products (fr_loop_plan). The buffers are the thread's own (runtime.h: fr_buffer). */
typedef struct {
    int64_t j0, hs;          /* first unit and number of units */
    int64_t np[3];           /* padded widths of the products (groups * hs, up to NR) */
    REAL *P[3];              /* packed weights (K x np) */
    REAL *S;                 /* products 0 and 1's buffer (B x max(np[0], np[1])) */
    REAL *XS;                /* product 2's buffer (xsteps * B rows of np[2]) */
    int64_t xsteps, xt0;     /* steps per product 2 (0: none), and the first time of its rows */
    int64_t xend;            /* the step after the current block (project_step) */
    REAL *PB;                /* packing buffer of the big products (par_gemm), NULL with BLAS */
    int direct;              /* a single step: read the weights in place (w[..]) instead of packing */
    int rev[3];              /* sweep direction of the next product on P[p], alternating (packed_gemm) */
    SFX(wview_t) w[3];       /* each product's weights (K and ngroups from the plan, the rest slice_weights) */
} SFX(slice_t);

/* The start of every time loop, run by each thread of the parallel region: take this thread's slice
 * of the H units among plan->nt threads (none when its number is nt or more) and its buffers as the
 * plan says; thread 0 sizes the per-step barrier. Returns 0 (and raises *failed for everyone) when
 * out of memory. */
int SFX(loop_begin)(SFX(slice_t) *sl, fr_barrier_t *bar, int *failed, const fr_loop_plan *plan);

/* Whether a loop of T steps reads its weights in place rather than packed (loop_begin's `direct`):
 * only a single step (T = 1, a cell's), of a batch small enough that packing would cost more than
 * the register-blocked product saves (loop.c: FR_DIRECT_BATCH); `forward`: the forward's loop. */
int SFX(direct_step)(const fr_layer *L, int forward);

/* Take the weights of product `which` (its K and groups from the plan) as the view (src, strides) of
 * this thread's units: pack them into P[which], or, for a single step, keep the view. */
void SFX(slice_weights)(SFX(slice_t) *sl, int which, const REAL *src, size_t gstride, size_t cstride,
                        size_t kstride);

/* S[b, 0..ngroups*hs) = A[b, :] Bmat for product `which`, b < B (A rows of stride lda; S's rows of
 * stride np[which]); product 2 into XS (rows of stride np[2]). */
void SFX(slice_product)(SFX(slice_t) *sl, int which, int64_t B, const REAL *A, size_t lda);

/* After a backward step's product 0 (into sl->S): dh[b, my units] += S[b] for the rows active at step
 * s (an idle row's dh passes unchanged: its product, 0 * w, may be NaN). */
void SFX(add_product)(REAL *dh, const SFX(slice_t) *sl, int64_t s, const fr_layer *L);

/* The bias gradients of a backward loop, added into at every step and row of a thread's units: the
 * caller's db_ih and db_hh (ngroups groups of H) are cut between threads at units whose addresses
 * need not fall on cache-line boundaries, and a line that two threads write at every row moves from
 * core to core each time. So each thread adds into its own copy: bias_grads_take returns it (a
 * per-thread buffer laid out as db_ih then db_hh, only this thread's units [j0, j0 + hs) of each group
 * copied in, or zeros with `overwrite` (fastrnn.h); NULL when out of memory), bias_grads_give copies
 * those units back after the loop. The same additions in the same order: the same bits. */
REAL *SFX(bias_grads_take)(const REAL *db_ih, const REAL *db_hh, int64_t ngroups, int64_t H, int64_t j0, int64_t hs,
                           int overwrite);
void SFX(bias_grads_give)(REAL *db_ih, REAL *db_hh, const REAL *mine, int64_t ngroups, int64_t H, int64_t j0,
                          int64_t hs);

/* The bias added to the input projection: b_ih + b_hh, except on rows [hh_from, hh_to) (GRU reset
 * after: the n rows, whose b_hh stays inside r * (W_hn h + b_hn)). A per-thread buffer; NULL when out
 * of memory. */
REAL *SFX(input_bias)(const REAL *b_ih, const REAL *b_hh, int64_t GH, int64_t hh_from, int64_t hh_to);

/* With BLAS (`gemm`), before the loop: xproj[t, b, :] = x[t, b, :] w_ih^T for all T*B rows. */
int SFX(input_projection)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t TB, int64_t I, int64_t GH,
                          GEMM_T gemm);

/* Without BLAS, a forward makes its input projection in one of two ways, chosen by step_projection
 * from the sizes alone (so that the bits do not depend on the thread count):
 *  - by blocks of steps, each thread for its own units (step_projection returns the steps a block,
 *    xsteps >= 1): every xsteps steps, the block's rows of x times the thread's own rows of w_ih,
 *    packed once like those of w_hh (product 2, into XS), right before that step's recurrent product;
 *    nothing is written to xproj, no thread waits for another, and the gate math reads the projection
 *    from L1/L2. A block holds at least FR_STEPX_ROWS rows (B >= FR_STEPX_ROWS: one step; B = 1: 32),
 *    so that each weight read serves as many. For w_ih of at most FR_STEPX_MAX_BYTES (the threads'
 *    packed rows of w_ih and w_hh then stay near their L2), and not with both lengths and reverse (one
 *    step reads different times); and for a single step (T = 1, a cell) always: each thread reads in
 *    place (direct_step) or packs only its own rows of w_ih, where chunks would have every thread pack
 *    the whole of it for one use.
 *  - by chunks of steps (0): the steps per chunk of the input projection, and the projection of
 * steps [s0, s1) (times [s0, s1), or [T - s1, T - s0) in reverse), by every thread, P its buffer. */
int64_t SFX(step_projection)(const fr_layer *L, int64_t GH);

/* By blocks, called at every step s from 0 on: at the first step of a block, product 2 of its steps
 * [s, s + xsteps) (at most T), their rows of x (times [s, ..), or in reverse the times
 * [T - s - xsteps, T - s), in time order either way) times the thread's rows of w_ih, into XS; xt0
 * becomes the block's first time, xend its end. */
static inline void SFX(project_step)(SFX(slice_t) *sl, const REAL *x, int64_t s, const fr_layer *L)
{
    const int64_t T = L->T, B = L->B, I = L->I;
    if (s < sl->xend) return;
    sl->xend = s + sl->xsteps < T ? s + sl->xsteps : T;
    sl->xt0 = L->reverse ? T - sl->xend : s;
    SFX(slice_product)(sl, 2, (sl->xend - s) * B, x + (size_t)sl->xt0 * B * I, I);
}

/* The input projection of row b (time t) at the thread's units: XS's row (by blocks, `stepx`; its
 * groups hs apart) or xproj's (groups H apart, GH = G H a row). */
static inline const REAL *SFX(projection_row)(const SFX(slice_t) *sl, int stepx, const REAL *xproj, int64_t t,
                                              int64_t b, int64_t B, int64_t GH)
{
    return stepx ? sl->XS + ((size_t)(t - sl->xt0) * B + b) * sl->np[2] : xproj + ((size_t)t * B + b) * GH + sl->j0;
}
int64_t SFX(chunk_steps)(const fr_layer *L);
/* The end of the chunk of tc steps from c0: c0 + tc, or T, also when fewer than FR_DIRECT + 1 rows
 * would be left after it. tc depends on the thread count, and a last chunk of at most FR_DIRECT rows
 * would take par_gemm's other path (gemm.h), giving those steps different bits at another count
 * (B = 1, I > 256, T = 1030: 1024 + 6 steps at 1 thread, one chunk at 2). */
static inline int64_t SFX(chunk_end)(int64_t c0, int64_t tc, int64_t T, int64_t B)
{
    return c0 + tc >= T || (T - c0 - tc) * B <= FR_DIRECT ? T : c0 + tc;
}
void SFX(project_steps)(REAL *xproj, const REAL *x, const REAL *w_ih, int64_t s0, int64_t s1, const fr_layer *L,
                        int64_t GH, REAL *P);

/* The operands of the weight and input gradients after a backward loop (TB = T B rows each): the
 * pre-activation gradients the loop leaves, dgh (GH columns) and dgx, both of row stride ld, dgx's
 * columns [0, xs) at dgx and, when dgx_hi is not NULL, its columns [xs, GH) at dgx_hi (the reset-after
 * GRU's shared buffer, fastrnn.h); x (I columns); the states each step starts from (H columns), which
 * multiply dw_hh's rows [0, split), and rh (H columns, row stride ld_rh; the Cho GRU's r * h), which
 * multiply its rows [split, GH); and w_ih. */
typedef struct {
    const REAL *dgh, *dgx, *dgx_hi;
    size_t ld;
    int64_t xs;
    const REAL *x, *states, *rh;
    size_t ld_rh;
    int64_t split;
    const REAL *w_ih;
} SFX(pregrads_t);

/* A backward with no step to run (T or B * H zero): dx zeroed, and the weight and bias gradients too
 * when they are written rather than added into (L->overwrite). */
void SFX(no_steps)(REAL *dx, REAL *dw_ih, REAL *dw_hh, REAL *db_ih, REAL *db_hh, const fr_layer *L, int64_t GH);

/* The weight and input gradients after a backward loop (`=` instead of `+=` with L->overwrite):
 *   dw_ih += dgx^T x,  dx = dgx w_ih,
 *   dw_hh[rows 0 .. split) += dgh[:, 0 .. split)^T states
 *   dw_hh[rows split .. GH) += dgh[:, split .. GH)^T rh
 * with BLAS (one call each, two for dx and dw_ih with dgx_hi; FR_ETOOBIG possible), or by every thread
 * of the region (P its buffer). */
int SFX(weight_gradients)(REAL *dx, REAL *dw_ih, REAL *dw_hh, const SFX(pregrads_t) *g, const fr_layer *L,
                          int64_t GH, GEMM_T gemm);
void SFX(weight_gradients_par)(REAL *dx, REAL *dw_ih, REAL *dw_hh, const SFX(pregrads_t) *g, const fr_layer *L,
                               int64_t GH, REAL *P);

/* Where the forward keeps the state after step s - 1: in `states` (training), or, when `states` is
 * NULL (inference, no backward to come), in the two rows of `pair` (state_pair: a per-thread buffer,
 * NULL when out of memory or not needed), used in turn. */
static inline REAL *SFX(state_at)(REAL *states, REAL *pair, size_t BH, int64_t s)
{
    return states ? states + (size_t)s * BH : pair + (size_t)(s & 1) * BH;
}
REAL *SFX(state_pair)(REAL *states, size_t BH);

/* Idle rows (sequence b at index i >= len_b) of the weight gradients' operands: x (time-ordered rows)
 * and the states each step starts from (step-ordered). Their gradient rows are zero, but 0 * NaN or
 * 0 * Inf is NaN, so a non-finite value there (padding, or the state of a sequence with no valid step)
 * would reach dw_ih / dw_hh. Where there is one, *xg / *sg become copies with zeros in the idle rows
 * (in *copies, freed by backward_end). Returns FR_ENOMEM when a copy cannot be made. */
int SFX(finite_operands)(const REAL **xg, const REAL **sg, REAL **copies, const fr_layer *L);

/* The end of a backward: free the copies of finite_operands, and zero dx at padded times (there the
 * product dgx w_ih is 0 * w_ih, NaN where w_ih is not finite; the reference leaves them 0). Returns rc. */
int SFX(backward_end)(int rc, REAL *copies, REAL *dx, const fr_layer *L);

#endif
