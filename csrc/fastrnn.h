/* fastrnn C kernels: vanilla RNN and GRU, one layer and one direction, forward and backward (BPTT).
 *
 * Conventions (as llm.c): one function per operation, `*_forward` / `*_backward` pairs; arguments are
 * outputs first, then inputs, weights, then the call's sizes and options (fr_layer) and the optional
 * BLAS. Every buffer is row-major and C-contiguous, owned by the caller (the Cython binding allocates
 * them with NumPy); the kernels' own work buffers (packed weights, one step's products) are
 * per-thread buffers reused from call to call, taken before the time loop; every allocation is
 * checked. Backward functions ADD into the weight and bias gradients and WRITE dx and dh0. No buffer
 * may overlap another unless stated.
 *
 * Sizes: T steps, B batch, I input features, H hidden units, G gates (RNN 1, GRU 3, rows r, z, n as
 * PyTorch), all int64_t, any of them may be 0 (a buffer of no elements may then be NULL); offsets
 * are computed in 64 bits. "Step" s = 0..T-1 is the order of processing; sequence b at step s reads time
 *     t = reverse ? len_b - 1 - s : s        (len_b = lengths[b], or T when lengths is NULL)
 * and is idle (state carried, output 0, no gradient) when s >= len_b. Buffers marked "step-ordered"
 * are indexed by s, "time-ordered" by t.
 *
 * Instruction sets: the kernels are compiled once per level (x86-64: baseline SSE2, AVX2+FMA,
 * AVX-512; elsewhere the compiler's baseline) into the one library, and every entry point below runs
 * the level chosen by fr_simd_select (the widest the CPU supports, unless told otherwise). Results
 * do not depend on the thread count: every element is computed by the same operations in the same
 * order whichever thread owns it (bitwise, within one level; levels differ in the last bits, as
 * their vector widths sum in different orders; with `gemm` set, OpenBLAS may round differently).
 */
#ifndef FASTRNN_H
#define FASTRNN_H

#include <stdint.h>

#define FR_OK 0
#define FR_ENOMEM 1
#define FR_ETOOBIG 2      /* a size the 32-bit BLAS interface cannot take (the `gemm` path only) */
#define FR_EUNKNOWN 3     /* fr_simd_select: not the name of a level */
#define FR_ENOTBUILT 4    /* fr_simd_select: a level this library was built without */
#define FR_EUNSUPPORTED 5 /* fr_simd_select: a level this CPU cannot run */

/* One call's sizes and options. */
typedef struct {
    int64_t T, B, I, H;        /* steps, batch, input features, hidden units (>= 0) */
    const int64_t *lengths;    /* (B) valid steps of each sequence, 0 <= len_b <= T; or NULL: all T */
    int reverse;               /* 1: each sequence is read from its last valid time back to 0 */
    int variant;               /* RNN: FR_RNN_TANH / FR_RNN_RELU; GRU: FR_GRU_RESET_AFTER / _BEFORE */
    int nthreads;              /* at most this many threads (>= 1) */
    int overwrite;             /* backward: 1: the weight and bias gradients are written, their values on
                                  entry not read (fresh arrays need no zeroing); 0: added into */
} fr_layer;

/* The cell variants, named here once. */
#define FR_RNN_TANH 0          /* h' = tanh(...) */
#define FR_RNN_RELU 1          /* h' = relu(...) */
#define FR_GRU_RESET_BEFORE 0  /* Cho et al.: n = tanh(W_in x + b_in + W_hn (r * h) + b_hn) */
#define FR_GRU_RESET_AFTER 1   /* PyTorch / cuDNN: n = tanh(W_in x + b_in + r * (W_hn h + b_hn)) */

/* Fortran BLAS gemm (column-major), as scipy.linalg.cython_blas exports it. With `gemm` NULL, the big
 * products (the input projection, by blocks or chunks of steps inside the loop; dx and the weight gradients
 * after it, K = T*B) are fastrnn's own packed GEMM, run by the same parallel region as the time loop;
 * with `gemm` set they are single BLAS calls (the input projection then all at once before the
 * loop), which run on the BLAS's own thread pool. */
typedef void (*fr_gemm_f32)(char *transa, char *transb, int *m, int *n, int *k, float *alpha, float *a,
                            int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*fr_gemm_f64)(char *transa, char *transb, int *m, int *n, int *k, double *alpha, double *a,
                            int *lda, double *b, int *ldb, double *beta, double *c, int *ldc);

/* The buffers, with L = the call's fr_layer (G = 1 for the RNN, 3 for the GRU):
 *
 *   x        (T, B, I)     time-ordered input
 *   h0       (B, H)        initial state
 *   w_ih     (G*H, I)      input weights;  w_hh (G*H, H) recurrent weights
 *   b_ih     (G*H)         input bias;     b_hh (G*H)    recurrent bias
 *   out      (T, B, H)     written: time-ordered outputs h_t (0 where t >= len_b)
 *   h_n      (B, H)        written: state after each sequence's last valid step
 *   states   (T+1, B, H)   written, step-ordered: states[0] = h0, states[s+1] = state after step s;
 *                          kept for backward. NULL in an inference forward (no backward to come):
 *                          the loop then keeps two states of its own, used in turn
 *   xproj    (T, B, G*H)   scratch, time-ordered: input projection x w_ih^T of all steps
 *   gates    (T, B, 4H)    GRU only, written, step-ordered, kept for backward: r, z, n and
 *                          hn = W_hn h + b_hn (reset after) or rh = r * h_{t-1} (reset before);
 *                          NULL in an inference forward (with states)
 *   d_out    (T, B, H)     gradient of the loss with respect to out;  d_hn (B, H): to h_n
 *   dx       (T, B, I)     written;  dh0 (B, H) written
 *   dw_ih, dw_hh, db_ih, db_hh   shaped as the weights and biases: added into (written with L->overwrite)
 *   dgh      (T, B, G*H)   scratch, step-ordered: gradient of the recurrent pre-activations
 *   dgx      (T, B, G*H)   scratch, time-ordered: gradient of the input pre-activations
 *                          When lengths is NULL and reverse is 0 (steps and times coincide), dgx may
 *                          be the same buffer as dgh: for the RNN and the reset-before GRU, whose two
 *                          gradients are equal, one (T, B, G*H) buffer; for the reset-after GRU one
 *                          (T, B, 4H) buffer of rows [dr | dz | dn * r | dn] (dgh its first 3H
 *                          columns, dgx its r, z and last columns)
 *
 * Each returns FR_OK, FR_ENOMEM (nothing is left half-written that the caller reads: it raises), or
 * FR_ETOOBIG (`gemm` set and a size over 2^31 - 1; checked before anything is written). */

/* Vanilla RNN:  h_t = g(w_ih x_t + b_ih + w_hh h_{t-1} + b_hh),  g = tanh or relu (L->variant). */
int fr_rnn_forward_f32(float *out, float *h_n, float *states, float *xproj, const float *x, const float *h0,
                       const float *w_ih, const float *w_hh, const float *b_ih, const float *b_hh,
                       const fr_layer *L, fr_gemm_f32 gemm);
int fr_rnn_forward_f64(double *out, double *h_n, double *states, double *xproj, const double *x,
                       const double *h0, const double *w_ih, const double *w_hh, const double *b_ih,
                       const double *b_hh, const fr_layer *L, fr_gemm_f64 gemm);
int fr_rnn_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                        float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                        const float *states, const float *w_ih, const float *w_hh, const fr_layer *L,
                        fr_gemm_f32 gemm);
int fr_rnn_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih, double *db_hh,
                        double *dgh, double *dgx, const double *d_out, const double *d_hn, const double *x,
                        const double *states, const double *w_ih, const double *w_hh, const fr_layer *L,
                        fr_gemm_f64 gemm);

/* GRU, rows r, z, n (PyTorch):
 *   r = sigmoid(W_ir x + b_ir + W_hr h + b_hr),  z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
 *   n as L->variant says (FR_GRU_RESET_AFTER / FR_GRU_RESET_BEFORE),   h' = (1 - z) * n + z * h */
int fr_gru_forward_f32(float *out, float *h_n, float *states, float *gates, float *xproj, const float *x,
                       const float *h0, const float *w_ih, const float *w_hh, const float *b_ih,
                       const float *b_hh, const fr_layer *L, fr_gemm_f32 gemm);
int fr_gru_forward_f64(double *out, double *h_n, double *states, double *gates, double *xproj,
                       const double *x, const double *h0, const double *w_ih, const double *w_hh,
                       const double *b_ih, const double *b_hh, const fr_layer *L, fr_gemm_f64 gemm);
int fr_gru_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                        float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                        const float *states, const float *gates, const float *w_ih, const float *w_hh,
                        const fr_layer *L, fr_gemm_f32 gemm);
int fr_gru_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih, double *db_hh,
                        double *dgh, double *dgx, const double *d_out, const double *d_hn, const double *x,
                        const double *states, const double *gates, const double *w_ih, const double *w_hh,
                        const fr_layer *L, fr_gemm_f64 gemm);

/* ---- instruction-set levels ----------------------------------------------------------------------
 * fr_simd_select(name): run the kernels of level `name` ("baseline", "avx2", "avx512"; "native" in a
 * -march=native build) from now on; NULL or "" picks the widest this CPU supports. Returns FR_OK, or
 * FR_EUNKNOWN / FR_ENOTBUILT / FR_EUNSUPPORTED and leaves the level as it was. Not to be called while
 * a kernel runs in another thread (the binding calls it once, at import). */
int fr_simd_select(const char *name);
const char *fr_simd(void);            /* the level in use, e.g. "avx512" */
const char *fr_simd_built(void);      /* the levels built, widest first, space-separated */
const char *fr_simd_cpu(void);        /* those this CPU supports, widest first, space-separated */
const char *fr_simd_detail(void);     /* what the level in use runs: vector width, ISA extensions */

/* out[i] = a 64-bit fingerprint of the bytes[i] bytes at data[i] (0 allowed, then data[i] may be NULL),
 * for i < n, computed by up to `nthreads` threads and the same at any `nthreads`: the functional API
 * compares an input's fingerprint at a backward with the one taken at its forward, to refuse a
 * backward through inputs changed in between. */
void fr_fingerprints(uint64_t *out, const void *const *data, const int64_t *bytes, int n, int nthreads);

/* Free the calling thread's work buffers and those of the OpenMP workers it has started (they are
 * also freed when a thread exits). */
void fr_release_buffers(void);

/* Build facts for show_config(). */
int fr_openmp_enabled(void);
int fr_max_threads(void);

#endif
