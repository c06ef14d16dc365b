/* fastrnn C kernels: vanilla RNN and GRU, one layer and one direction, forward and backward (BPTT).
 *
 * Conventions (as llm.c): one function per operation, `*_forward` / `*_backward` pairs; arguments are
 * outputs first, then inputs, weights, sizes and options. Every buffer is row-major and C-contiguous,
 * owned by the caller (the Cython binding allocates them with NumPy); the kernels' own work buffers
 * (packed weights, one step's products) are per-thread buffers reused from call to call, taken
 * before the time loop; every allocation is checked. Backward functions ADD into the weight and bias gradients and WRITE dx and dh0.
 *
 * Sizes: T steps, B batch, I input features, H hidden units, G gates (RNN 1, GRU 3, rows r, z, n as
 * PyTorch), all int64_t, any of them may be 0 (a buffer of no elements may then be NULL); offsets
 * are computed in 64 bits. "Step" s = 0..T-1 is the order of processing; sequence b at step s reads time
 *     t = reverse ? len_b - 1 - s : s        (len_b = lengths[b], or T when lengths is NULL)
 * and is idle (state carried, output 0, no gradient) when s >= len_b. Buffers marked "step-ordered"
 * are indexed by s, "time-ordered" by t.
 *
 * Shared buffers (all layers):
 *   x        (T, B, I)     time-ordered input
 *   h0       (B, H)        initial state
 *   w_ih     (G*H, I)      input weights;  w_hh (G*H, H) recurrent weights
 *   b_ih     (G*H)         input bias;     b_hh (G*H)    recurrent bias
 *   lengths  (B) or NULL   valid steps of each sequence, 0 <= len_b <= T
 *   out      (T, B, H)     time-ordered outputs h_t (0 where t >= len_b)
 *   h_n      (B, H)        state after each sequence's last valid step
 *   states   (T+1, B, H)   step-ordered states: states[0] = h0, states[s+1] = state after step s;
 *                          kept for backward. NULL in an inference forward (no backward to come):
 *                          the loop then keeps two states of its own, used in turn
 *   xproj    (T, B, G*H)   scratch, time-ordered: input projection x w_ih^T of all steps, made a
 *                          chunk of steps at a time just before the loop reaches them (one GEMM
 *                          each, about 1024 rows per thread; all at once with `gemm`)
 *   gates    (T, B, 4H)    GRU only, step-ordered, kept for backward: r, z, n and
 *                          hn = W_hn h + b_hn (reset_after) or rh = r * h_{t-1} (reset_after = 0);
 *                          NULL in an inference forward (with states): one step's, overwritten
 *   dgh      (T, B, G*H)   scratch, step-ordered: gradient of the recurrent pre-activations
 *   dgx      (T, B, G*H)   scratch, time-ordered: gradient of the input pre-activations
 *                          (RNN: may be the same buffer as dgh when lengths is NULL and reverse is 0)
 *
 * The big products (the input projection, by chunks of steps inside the loop; dx and the weight
 * gradients after it, K = T*B) are fastrnn's own packed GEMM (microkernel.h: par_gemm) run by the
 * same parallel region as the loop when `gemm` is NULL, or single OpenBLAS calls through `gemm`
 * (column-major Fortran sgemm/dgemm as scipy.linalg.cython_blas exports it; the input projection
 * then all at once before the loop), which then run on OpenBLAS's own thread pool.
 *
 * The time loop runs inside one OpenMP parallel region: each thread owns a slice of the hidden units,
 * packs its rows of w_hh once into its own buffer (a single step, T = 1, reads them in place), and
 * computes its slice of every step's recurrent
 * product (a register-blocked micro-kernel) and gate math; threads meet at one barrier per step
 * (two for the Cho GRU). Denormals are flushed to zero inside the kernels (x86 MXCSR).
 * Results do not depend on the thread count: every element is computed by the same operations in
 * the same order whichever thread owns it (bitwise; with `gemm` set, OpenBLAS may round differently).
 */
#ifndef FASTRNN_H
#define FASTRNN_H

#include <stdint.h>

#define FR_OK 0
#define FR_ENOMEM 1
#define FR_ETOOBIG 2   /* a size the 32-bit BLAS interface cannot take (the `gemm` path only) */

/* Fortran BLAS gemm (column-major), as scipy.linalg.cython_blas exports it. */
typedef void (*fr_gemm_f32)(char *transa, char *transb, int *m, int *n, int *k, float *alpha, float *a,
                            int *lda, float *b, int *ldb, float *beta, float *c, int *ldc);
typedef void (*fr_gemm_f64)(char *transa, char *transb, int *m, int *n, int *k, double *alpha, double *a,
                            int *lda, double *b, int *ldb, double *beta, double *c, int *ldc);

#define FR_DECLARE(REAL, SFX)                                                                                   \
    int fr_rnn_forward_##SFX(REAL *out, REAL *h_n, REAL *states, REAL *xproj, const REAL *x,                    \
                             const REAL *h0, const REAL *w_ih, const REAL *w_hh, const REAL *b_ih,              \
                             const REAL *b_hh, const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, \
                             int relu, int reverse, int nthreads, fr_gemm_##SFX gemm);                          \
    int fr_rnn_backward_##SFX(REAL *dx, REAL *dh0, REAL *dw_ih, REAL *dw_hh, REAL *db_ih, REAL *db_hh,          \
                              REAL *dgh, REAL *dgx, const REAL *d_out, const REAL *d_hn, const REAL *x,         \
                              const REAL *states, const REAL *w_ih, const REAL *w_hh,                           \
                              const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, int relu,     \
                              int reverse, int nthreads, fr_gemm_##SFX gemm);                                   \
    int fr_gru_forward_##SFX(REAL *out, REAL *h_n, REAL *states, REAL *gates, REAL *xproj,                      \
                             const REAL *x, const REAL *h0, const REAL *w_ih, const REAL *w_hh,                 \
                             const REAL *b_ih, const REAL *b_hh, const int64_t *lengths, int64_t T,             \
                             int64_t B, int64_t I, int64_t H, int reset_after, int reverse, int nthreads,       \
                             fr_gemm_##SFX gemm);                                                               \
    int fr_gru_backward_##SFX(REAL *dx, REAL *dh0, REAL *dw_ih, REAL *dw_hh, REAL *db_ih, REAL *db_hh,          \
                              REAL *dgh, REAL *dgx, const REAL *d_out, const REAL *d_hn, const REAL *x,         \
                              const REAL *states, const REAL *gates, const REAL *w_ih,                          \
                              const REAL *w_hh, const int64_t *lengths, int64_t T, int64_t B, int64_t I, int64_t H, \
                              int reset_after, int reverse, int nthreads, fr_gemm_##SFX gemm);

FR_DECLARE(float, f32)
FR_DECLARE(double, f64)

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
const char *fr_simd(void);

#endif
