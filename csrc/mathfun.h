/* Elementwise activations of the gate math, written so that gcc vectorizes a loop that calls them.
 *
 * float:  exp, sigmoid and tanh by Cephes-style range reduction and minimax polynomials (about 1-2 ulp),
 *         branch-free (selects instead of branches), so a loop over hidden units becomes SIMD code.
 * double: the C library's exp and tanh, exactly as accurate as the NumPy reference.
 * Both propagate NaN, and map +-inf to the right limits. No fast-math option is needed or wanted.
 */
#ifndef FASTRNN_MATHFUN_H
#define FASTRNN_MATHFUN_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for x <= 0 (callers only need that range); 0 below -87 where the result would be denormal;
 * NaN for NaN. The range reduction runs on a clamped copy of x that is always finite (NaN replaced
 * by 0), so that the float-to-int conversion and the exponent shift stay defined; the result is
 * then selected. */
static inline float fr_expneg_f32(float x)
{
    float xc = x < -87.0f ? -87.0f : (x <= 0.0f ? x : 0.0f);    /* NaN fails both compares: 0 */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round(x / ln2), in [-126, 0] */
    float r = xc - n * 0.693359375f;                    /* x - n ln2, ln2 split in two parts */
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;  /* 2^n, n + 127 in [1, 127] */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    y = y * scale;
    y = x < -87.0f ? 0.0f : y;
    return x == x ? y : x;                              /* NaN in, NaN out */
}

static inline float fr_sigmoid_f32(float x)
{
    float e = fr_expneg_f32(-fabsf(x));                 /* exp(-|x|) in (0, 1] */
    float d = 1.0f / (1.0f + e);
    return x >= 0.0f ? d : e * d;                       /* NaN: e is NaN, so is e * d */
}

static inline float fr_tanh_f32(float x)
{
    float a = fabsf(x);
    /* large |x|: (1 - e) / (1 + e), e = exp(-2|x|) */
    float e = fr_expneg_f32(-2.0f * a);
    float big = (1.0f - e) / (1.0f + e);
    /* small |x| < 0.625: x + x^3 P(x^2) (Cephes tanhf), accurate where 1 - e would cancel */
    float z = a * a;
    float p = -5.70498872745e-3f;
    p = p * z + 2.06390887954e-2f;
    p = p * z - 5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z - 3.33332819422e-1f;
    float small = a + a * z * p;
    float t = a < 0.625f ? small : big;
    return copysignf(t, x);
}

static inline double fr_sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double fr_tanh_f64(double x) { return tanh(x); }

#endif
