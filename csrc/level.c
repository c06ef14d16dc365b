/* What one level's code needs of the CPU, and its vector width, from the macros its target flags
 * define (compiled once per level, with the kernels' flags; see kernel.h): the dispatch (dispatch.c)
 * chooses the level only on a CPU that has every one of these features. A -march=native build's
 * code may use any extension of the build machine, so the list covers those gcc and clang use. */
#include "kernel.h"

const int FR_CAT(fr_vbytes_, FR_LEVEL) = FR_VBYTES;
const unsigned FR_CAT(fr_needs_, FR_LEVEL) = 0
#ifdef __SSE3__
    | FR_CPU_SSE3
#endif
#ifdef __SSSE3__
    | FR_CPU_SSSE3
#endif
#ifdef __SSE4_1__
    | FR_CPU_SSE41
#endif
#ifdef __SSE4_2__
    | FR_CPU_SSE42
#endif
#ifdef __POPCNT__
    | FR_CPU_POPCNT
#endif
#ifdef __AVX__
    | FR_CPU_AVX
#endif
#ifdef __AVX2__
    | FR_CPU_AVX2
#endif
#ifdef __FMA__
    | FR_CPU_FMA
#endif
#ifdef __F16C__
    | FR_CPU_F16C
#endif
#ifdef __BMI__
    | FR_CPU_BMI
#endif
#ifdef __BMI2__
    | FR_CPU_BMI2
#endif
#ifdef __AVX512F__
    | FR_CPU_AVX512F
#endif
#ifdef __AVX512VL__
    | FR_CPU_AVX512VL
#endif
#ifdef __AVX512BW__
    | FR_CPU_AVX512BW
#endif
#ifdef __AVX512DQ__
    | FR_CPU_AVX512DQ
#endif
#ifdef __AVX512CD__
    | FR_CPU_AVX512CD
#endif
#ifdef __AVX512VNNI__
    | FR_CPU_AVX512VNNI
#endif
#ifdef __AVX512BF16__
    | FR_CPU_AVX512BF16
#endif
#ifdef __AVX512FP16__
    | FR_CPU_AVX512FP16
#endif
#ifdef __AVX512IFMA__
    | FR_CPU_AVX512IFMA
#endif
#ifdef __AVX512VBMI__
    | FR_CPU_AVX512VBMI
#endif
    ;

