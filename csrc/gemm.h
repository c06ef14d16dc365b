/* fastrnn's own GEMM (gemm.c; the products that read the weights in place: inplace.c), for one
 * level and type (kernel.h): the recurrent product of one step on weights a thread packed once, and
 * the big products before and after a time loop, shared by the threads of its parallel region. Every matrix is given by its data and its strides (row `rs`
 * or `*rs`, column `cs` or `*cs`, in elements); C never overlaps A or B. Results do not depend on the
 * thread count (each element is one fixed order of operations). */
#ifndef FASTRNN_GEMM_H
#define FASTRNN_GEMM_H

#include "kernel.h"

/* Pack the K x np matrix Bmat[k][c] = src[colbase(c) + k * kstride], colbase(c) = (c / hs) * gstride +
 * (j0 + c % hs) * cstride (`ngroups` groups of `hs` columns: the gates of one hidden slice), zero-padded
 * from ngroups * hs up to np columns (a multiple of NR), into P (K * np elements, owned by the caller):
 * panels of NR columns, K-major inside a panel, P[(p*K + k)*NR + c] = Bmat[k][p*NR + c]. */
void SFX(pack_panels)(REAL *P, const REAL *src, int64_t K, int64_t ngroups, int64_t hs, int64_t j0, size_t gstride,
                      size_t cstride, size_t kstride, int64_t np);

/* One step's recurrent product, by one thread: C[M, Np] = A[M, K] P, A rows of stride lda, P packed
 * by pack_panels (Np a multiple of NR), C rows of stride ldc. `rev` sweeps the panels last to first
 * (the same result; see gemm.c). */
void SFX(packed_gemm)(int64_t M, int64_t Np, int64_t K, const REAL *A, size_t lda, const REAL *P, REAL *C,
                      size_t ldc, int rev);

/* C[i * ldc + u] (+)= A[i * lda ...] . Bm[u * bs ...] over K contiguous elements, i < M, u < n (`acc`
 * adds into C): the weights read in place, their columns contiguous. */
void SFX(dots)(REAL *C, size_t ldc, const REAL *A, size_t lda, int64_t M, const REAL *Bm, size_t bs, int64_t n,
               int64_t K, int acc);

/* C[i, u] (+)= sum_k A(i, k) Bm[k * brs + u * bcs], A(i, k) = A[i * ars + k * acs], i < M, u < n: the
 * weights read in place, their rows contiguous (bcs == 1) or not. */
void SFX(row_updates)(REAL *C, size_t ldc, const REAL *A, size_t ars, size_t acs, int64_t M, const REAL *Bm,
                      size_t brs, size_t bcs, int64_t n, int64_t K, int acc);

/* par_gemm reads B in place (direct_gemm: each element one chain over all K terms) when M or K is at
 * most FR_DIRECT, where the packed path makes a chain per block of FR_BKC terms: for K > FR_BKC the
 * two give different bits. So a caller that cuts a product into pieces whose sizes depend on the
 * thread count (loop.h: chunk_end) keeps every piece above FR_DIRECT rows. */
#define FR_DIRECT 8

/* The big products, called by every thread of a parallel region:  C[M, N] = (acc ? C : 0) + A B  with
 * A(i, k) = A[i*ars + k*acs], B(k, j) = Bm[k*brs + j*bcs] (bcs == 1 or brs == 1). P: the calling
 * thread's packing buffer of pack_size() elements. No barrier inside: the caller puts one where a
 * result is read by other threads. */
void SFX(par_gemm)(int64_t M, int64_t N, int64_t K, const REAL *A, size_t ars, size_t acs, const REAL *Bm, size_t brs,
                   size_t bcs, REAL *C, size_t ldc, int acc, REAL *P);
size_t SFX(pack_size)(void);

/* Row-major C[M,N] = alpha op(A) op(B) + beta C through the column-major Fortran `gemm` (ta / tb:
 * op transposes): FR_OK, or FR_ETOOBIG for a size its 32-bit ints cannot take (see gemm.c). */
int SFX(gemm_rm)(GEMM_T gemm, int ta, int tb, int64_t M, int64_t N, int64_t K, REAL alpha, const REAL *A,
                 int64_t lda, const REAL *Bm, int64_t ldb, REAL beta, REAL *C, int64_t ldc);

#endif
