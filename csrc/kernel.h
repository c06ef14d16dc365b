/* The compile of one instruction-set level and one float type. gemm.c, inplace.c, loop.c, rnn.c and gru.c are
 * each compiled once per (level, type) that setup.py builds, with
 *     -DFR_LEVEL=<baseline|avx2|avx512|native>   the level, and its target flags (-mavx2 -mfma, ...)
 *     -DFR_DOUBLE=<0|1>                          float or double
 * and include this header first. It names everything they define after both (SFX(f) is
 * f_f32_avx2, ...), so the objects of all levels link into one library, and gives
 *     REAL                the float type;   SIGMOID, TANH   its activations (mathfun.h)
 *     GEMM_T              the Fortran gemm of that type (fastrnn.h)
 *     FR_VBYTES           bytes of the kernels' vectors: the widest the target has
 *     VEC, VL, NR, UNITS  the vector type, its lanes, the GEMM panel width (two vectors) and the
 *                         hidden units a thread's slice is made of (see fr_slice)
 * level.c records, as fr_needs_<level> and fr_vbytes_<level>, what the level's code needs of the CPU
 * and its vector width, for the dispatch.
 * The dispatch (dispatch.c) picks one level's entry points at run time. */
#ifndef FASTRNN_KERNEL_H
#define FASTRNN_KERNEL_H

#include <stdint.h>

#include "fastrnn.h"
#include "mathfun.h"
#include "runtime.h"

#if !defined(FR_LEVEL) || !defined(FR_DOUBLE)
#error "compile with -DFR_LEVEL=<level> -DFR_DOUBLE=<0|1> (see setup.py)"
#endif

#define FR_CAT_(a, b) a##b
#define FR_CAT(a, b) FR_CAT_(a, b)

#if FR_DOUBLE
#define REAL double
#define FR_TYPE f64
#define GEMM_T fr_gemm_f64
#define SIGMOID fr_sigmoid_f64
#define TANH fr_tanh_f64
#else
#define REAL float
#define FR_TYPE f32
#define GEMM_T fr_gemm_f32
#define SIGMOID fr_sigmoid_f32
#define TANH fr_tanh_f32
#endif

/* f -> f_f32_avx2: this compile's name for f */
#define SFX(name) FR_CAT(FR_CAT(FR_CAT(name, _), FR_TYPE), FR_CAT(_, FR_LEVEL))
/* f -> f_f32: the public entry point whose signature this compile's f has */
#define FR_PUBLIC(name) FR_CAT(FR_CAT(name, _), FR_TYPE)

/* Bytes of the kernels' vectors: the widest the target has (a -DFR_VBYTES=... overrides). 512-bit
 * vectors pay even where the FMA units are 256 bits wide (AMD Zen 4): one instruction feeds both, and
 * the micro-kernel's panel loads and broadcasts are half as many per flop. */
#if defined(FR_VBYTES)
#elif defined(__AVX512F__)
#define FR_VBYTES 64
#elif defined(__AVX__)
#define FR_VBYTES 32
#else
#define FR_VBYTES 16
#endif

typedef REAL VEC __attribute__((vector_size(FR_VBYTES)));
enum { VL = FR_VBYTES / (int)sizeof(REAL), NR = 2 * VL };
/* Columns (hidden units) are shared between threads in whole chunks of UNITS: a whole vector, and at
 * least the four outputs of a tile of dots() (inplace.c), so that a column is computed by the same code,
 * to the same bits, whatever the thread count. */
enum { UNITS = VL < 4 ? 4 : VL };

/* The entry points this compile defines, declared with the public prototypes' types (fastrnn.h), so
 * that a definition that differs from them does not compile. */
extern __typeof__(FR_PUBLIC(fr_rnn_forward)) SFX(fr_rnn_forward);
extern __typeof__(FR_PUBLIC(fr_rnn_backward)) SFX(fr_rnn_backward);
extern __typeof__(FR_PUBLIC(fr_gru_forward)) SFX(fr_gru_forward);
extern __typeof__(FR_PUBLIC(fr_gru_backward)) SFX(fr_gru_backward);
extern const unsigned FR_CAT(fr_needs_, FR_LEVEL);
extern const int FR_CAT(fr_vbytes_, FR_LEVEL);

#endif
