/* Register-blocked product of a row block by a packed weight panel: the recurrent product of one step.
 * Included by kernels_impl.h once per REAL type (REAL, SFX defined there).
 *
 *   C[M, Np] = A[M, K] * P          A: rows of stride lda (the state, or a gradient, of one step)
 *                                   P: K x Np packed in panels of NR columns, K-major inside a panel:
 *                                      P[(p*K + k)*NR + c] = Bmat[k][p*NR + c]; Np a multiple of NR
 *                                   C: rows of stride ldc
 * Each thread packs its own slice of the weights once per call (pack_panels) and then multiplies every
 * step from its own cache. MR x NR accumulators stay in registers; the k loop does MR broadcasts,
 * 2 vector loads and 2*MR fused multiply-adds.
 */

typedef REAL SFX(vec) __attribute__((vector_size(FR_VBYTES)));
enum { SFX(VL) = FR_VBYTES / (int)sizeof(REAL), SFX(NR) = 2 * (FR_VBYTES / (int)sizeof(REAL)) };
#ifndef FR_MR
#define FR_MR 6
#endif

/* Bmat[k][c] = src[colbase(c) + k * kstride], with colbase(c) = (c / hs) * gstride + (j0 + c % hs) * cstride:
 * `ngroups` groups of `hs` columns (gates of one hidden slice), zero-padded up to np columns. */
static void SFX(pack_panels)(REAL *P, const REAL *src, int K, int ngroups, int hs, int j0, size_t gstride,
                             size_t cstride, size_t kstride, int np)
{
    const int NR = SFX(NR);
    for (int c = 0; c < np; c++) {
        REAL *dst = P + (size_t)(c / NR) * K * NR + c % NR;
        if (c < ngroups * hs) {
            const REAL *s = src + (size_t)(c / hs) * gstride + (size_t)(j0 + c % hs) * cstride;
            for (int k = 0; k < K; k++) dst[(size_t)k * NR] = s[(size_t)k * kstride];
        } else {
            for (int k = 0; k < K; k++) dst[(size_t)k * NR] = 0;
        }
    }
}

/* One MR x NR block; rows past `mr` repeat the last valid row and are not stored. */
static inline void SFX(ukernel)(int mr, int K, const REAL *A, size_t lda, const REAL *P, REAL *C, size_t ldc)
{
    typedef SFX(vec) V;
    enum { VL = SFX(VL), NR = SFX(NR) };
    const REAL *a[FR_MR];
    V c0[FR_MR], c1[FR_MR];
    for (int i = 0; i < FR_MR; i++) {
        a[i] = A + (size_t)(i < mr ? i : mr - 1) * lda;
        c0[i] = (V){0};
        c1[i] = (V){0};
    }
    for (int k = 0; k < K; k++) {
        V b0 = *(const V *)(P + (size_t)k * NR);
        V b1 = *(const V *)(P + (size_t)k * NR + VL);
        for (int i = 0; i < FR_MR; i++) {
            REAL av = a[i][k];
            c0[i] += av * b0;
            c1[i] += av * b1;
        }
    }
    for (int i = 0; i < mr; i++) {
        memcpy(C + (size_t)i * ldc, &c0[i], sizeof(V));
        memcpy(C + (size_t)i * ldc + VL, &c1[i], sizeof(V));
    }
}

__attribute__((noinline)) static void SFX(packed_gemm)(int M, int Np, int K, const REAL *A, size_t lda, const REAL *P, REAL *C, size_t ldc)
{
    const int NR = SFX(NR);
    for (int p = 0; p < Np / NR; p++)
        for (int i0 = 0; i0 < M; i0 += FR_MR)
            SFX(ukernel)(M - i0 < FR_MR ? M - i0 : FR_MR, K, A + (size_t)i0 * lda, lda,
                         P + (size_t)p * K * NR, C + (size_t)i0 * ldc + (size_t)p * NR, ldc);
}
