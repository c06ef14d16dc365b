/* Elementwise activations of the gate math, written so that gcc vectorizes a loop that calls them.
 *
 * float:  exp, sigmoid and tanh by Cephes-style range reduction and a minimax polynomial (tanh within 2.5
 *         ulp of the exact value, sigmoid within 3, over every 5th float32 bit pattern),
 *         branch-free (selects instead of branches), so a loop over hidden units becomes SIMD code.
 * double: the C library's exp and tanh, exactly as accurate as the NumPy reference.
 * Both propagate NaN, and map +-inf to the right limits. No fast-math option is needed or wanted.
 */
#ifndef FASTRNN_MATHFUN_H
#define FASTRNN_MATHFUN_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The range reduction shared by exp and expm1, for x <= 0 (callers only need that range): with xc
 * = x clamped to [-87, 0] (NaN replaced by 0, so that the float-to-int conversion and the exponent
 * shift stay defined), exp(xc) = scale (1 + q), scale = 2^n, n = round(xc / ln2) in [-126, 0]. The
 * polynomial is evaluated by Estrin's scheme (three levels of FMAs, not Horner's five): the gate
 * math's time is the latency of its chains (sigmoid r, then tanh of what r gives), not its count of
 * instructions. */
static inline float fr_expneg_parts_f32(float x, float *scale)
{
    float xc = x < -87.0f ? -87.0f : (x <= 0.0f ? x : 0.0f);    /* NaN fails both compares: 0 */
    float n = (xc * 1.44269504088896341f + 12582912.0f) - 12582912.0f;  /* round(x / ln2) */
    float r = xc - n * 0.693359375f;                    /* x - n ln2, ln2 split in two parts */
    r = r - n * -2.12194440e-4f;
    float r2 = r * r;
    float pa = 1.9875691500e-4f * r + 1.3981999507e-3f;
    float pb = 8.3334519073e-3f * r + 4.1665795894e-2f;
    float pc = 1.6666665459e-1f * r + 5.0000001201e-1f;
    float p = (pa * r2 + pb) * r2 + pc;
    uint32_t bits = (uint32_t)((int32_t)n + 127) << 23;  /* 2^n, n + 127 in [1, 127] */
    memcpy(scale, &bits, sizeof *scale);
    return p * r2 + r;
}

/* exp(x) for x <= 0; 0 below -87 where the result would be denormal; NaN for NaN. */
static inline float fr_expneg_f32(float x)
{
    float scale, q = fr_expneg_parts_f32(x, &scale);
    float y = (q + 1.0f) * scale;
    y = x < -87.0f ? 0.0f : y;
    return x == x ? y : x;                              /* NaN in, NaN out */
}

static inline float fr_sigmoid_f32(float x)
{
    float e = fr_expneg_f32(-fabsf(x));                 /* exp(-|x|) in (0, 1] */
    float d = 1.0f / (1.0f + e);
    return x >= 0.0f ? d : e * d;                       /* NaN: e is NaN, so is e * d */
}

/* tanh(|x|) = (1 - e) / (1 + e) = -m / (2 + m), e = exp(-2|x|), m = e - 1 = expm1(-2|x|): m is
 * scale q + (scale - 1), exact in relative terms near 0 (n = 0: m = q), so one formula holds for
 * every |x| (within 2.5 ulp of tanh; 1 at |x| above 9, where m rounds to -1). */
static inline float fr_tanh_f32(float x)
{
    float a = fabsf(x);
    float scale, q = fr_expneg_parts_f32(-2.0f * a, &scale);
    float m = scale * q + (scale - 1.0f);               /* expm1(-2|x|) in [-1, 0] */
    float t = m / (-2.0f - m);
    t = a == a ? t : x;                                 /* NaN in, NaN out */
    return copysignf(t, x);
}

static inline double fr_sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }
static inline double fr_tanh_f64(double x) { return tanh(x); }

#endif
