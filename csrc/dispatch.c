/* The dispatch: the public entry points of fastrnn.h run the kernels of the instruction-set level
 * chosen by fr_simd_select (by default the widest this CPU runs). Compiled once, for the baseline, so
 * that it runs on any CPU the library is loaded on. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "fastrnn.h"
#include "runtime.h"

/* setup.py compiles the kernels once per level and tells this file which with -DFR_BUILT_<level>.
 * Each level's objects define the eight entry points under their own names (kernel.h: SFX) and what
 * they need of the CPU (level.c). */
#define FR_DECLARE_LEVEL(L)                                                                            \
    extern __typeof__(fr_rnn_forward_f32) fr_rnn_forward_f32_##L;                                      \
    extern __typeof__(fr_rnn_forward_f64) fr_rnn_forward_f64_##L;                                      \
    extern __typeof__(fr_rnn_backward_f32) fr_rnn_backward_f32_##L;                                    \
    extern __typeof__(fr_rnn_backward_f64) fr_rnn_backward_f64_##L;                                    \
    extern __typeof__(fr_gru_forward_f32) fr_gru_forward_f32_##L;                                      \
    extern __typeof__(fr_gru_forward_f64) fr_gru_forward_f64_##L;                                      \
    extern __typeof__(fr_gru_backward_f32) fr_gru_backward_f32_##L;                                    \
    extern __typeof__(fr_gru_backward_f64) fr_gru_backward_f64_##L;                                    \
    extern const unsigned fr_needs_##L;                                                                \
    extern const int fr_vbytes_##L;

typedef struct {
    const char *name;
    const unsigned *needs;
    const int *vbytes;
    __typeof__(fr_rnn_forward_f32) *rnn_forward_f32;
    __typeof__(fr_rnn_forward_f64) *rnn_forward_f64;
    __typeof__(fr_rnn_backward_f32) *rnn_backward_f32;
    __typeof__(fr_rnn_backward_f64) *rnn_backward_f64;
    __typeof__(fr_gru_forward_f32) *gru_forward_f32;
    __typeof__(fr_gru_forward_f64) *gru_forward_f64;
    __typeof__(fr_gru_backward_f32) *gru_backward_f32;
    __typeof__(fr_gru_backward_f64) *gru_backward_f64;
} fr_level;

#define FR_LEVEL_ENTRY(L)                                                                              \
    {#L, &fr_needs_##L, &fr_vbytes_##L, fr_rnn_forward_f32_##L, fr_rnn_forward_f64_##L,               \
     fr_rnn_backward_f32_##L, fr_rnn_backward_f64_##L, fr_gru_forward_f32_##L, fr_gru_forward_f64_##L, \
     fr_gru_backward_f32_##L, fr_gru_backward_f64_##L}

#ifdef FR_BUILT_native
FR_DECLARE_LEVEL(native)
#endif
#ifdef FR_BUILT_avx512
FR_DECLARE_LEVEL(avx512)
#endif
#ifdef FR_BUILT_avx2
FR_DECLARE_LEVEL(avx2)
#endif
#ifdef FR_BUILT_baseline
FR_DECLARE_LEVEL(baseline)
#endif

/* The levels built, widest first. */
static const fr_level fr_levels[] = {
#ifdef FR_BUILT_native
    FR_LEVEL_ENTRY(native),
#endif
#ifdef FR_BUILT_avx512
    FR_LEVEL_ENTRY(avx512),
#endif
#ifdef FR_BUILT_avx2
    FR_LEVEL_ENTRY(avx2),
#endif
#ifdef FR_BUILT_baseline
    FR_LEVEL_ENTRY(baseline),
#endif
};
enum { FR_NLEVELS = sizeof fr_levels / sizeof fr_levels[0] };

/* The CPU's features (runtime.h: FR_CPU_*). gcc's and clang's __builtin_cpu_supports read cpuid and
 * check that the OS saves the vector registers (XCR0) for AVX and AVX-512. */
static unsigned fr_cpu_features(void)
{
    unsigned f = 0;
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
#define FR_HAS(name, bit) if (__builtin_cpu_supports(name)) f |= bit
    FR_HAS("sse3", FR_CPU_SSE3);
    FR_HAS("ssse3", FR_CPU_SSSE3);
    FR_HAS("sse4.1", FR_CPU_SSE41);
    FR_HAS("sse4.2", FR_CPU_SSE42);
    FR_HAS("popcnt", FR_CPU_POPCNT);
    FR_HAS("avx", FR_CPU_AVX);
    FR_HAS("avx2", FR_CPU_AVX2);
    FR_HAS("fma", FR_CPU_FMA);
    FR_HAS("f16c", FR_CPU_F16C);
    FR_HAS("bmi", FR_CPU_BMI);
    FR_HAS("bmi2", FR_CPU_BMI2);
    FR_HAS("avx512f", FR_CPU_AVX512F);
    FR_HAS("avx512vl", FR_CPU_AVX512VL);
    FR_HAS("avx512bw", FR_CPU_AVX512BW);
    FR_HAS("avx512dq", FR_CPU_AVX512DQ);
    FR_HAS("avx512cd", FR_CPU_AVX512CD);
    FR_HAS("avx512vnni", FR_CPU_AVX512VNNI);
    FR_HAS("avx512bf16", FR_CPU_AVX512BF16);
    FR_HAS("avx512fp16", FR_CPU_AVX512FP16);
    FR_HAS("avx512ifma", FR_CPU_AVX512IFMA);
    FR_HAS("avx512vbmi", FR_CPU_AVX512VBMI);
#undef FR_HAS
#endif
    return f;
}

static int fr_runs_here(const fr_level *lv) { return (*lv->needs & ~fr_cpu_features()) == 0; }

static const fr_level *fr_active;
static pthread_once_t fr_default_once = PTHREAD_ONCE_INIT;

/* The widest level this CPU runs (the baseline always does: it needs nothing past x86-64). */
static const fr_level *fr_widest(void)
{
    for (int i = 0; i < FR_NLEVELS; i++)
        if (fr_runs_here(&fr_levels[i])) return &fr_levels[i];
    return NULL;                  /* a native-only build on another CPU */
}

/* Without a select (the binding always makes one, and refuses to load when it fails): the widest. */
static void fr_pick_default(void)
{
    const fr_level *lv = fr_widest();
    if (!fr_active) fr_active = lv ? lv : &fr_levels[FR_NLEVELS - 1];
}

static const fr_level *fr_level_now(void)
{
    if (!fr_active) pthread_once(&fr_default_once, fr_pick_default);
    return fr_active;
}

int fr_simd_select(const char *name)
{
    static const char *const known[] = {"baseline", "avx2", "avx512", "native"};
    if (!name || !*name) {
        const fr_level *lv = fr_widest();
        if (!lv) return FR_EUNSUPPORTED;
        fr_active = lv;
        return FR_OK;
    }
    for (int i = 0; i < FR_NLEVELS; i++)
        if (!strcmp(fr_levels[i].name, name)) {
            if (!fr_runs_here(&fr_levels[i])) return FR_EUNSUPPORTED;
            fr_active = &fr_levels[i];
            return FR_OK;
        }
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(known[i], name)) return FR_ENOTBUILT;
    return FR_EUNKNOWN;
}

const char *fr_simd(void) { return fr_level_now()->name; }

/* "name name ..." of the levels built (only_runnable: those this CPU runs), written into buf. */
static const char *fr_level_list(char *buf, size_t size, int only_runnable)
{
    buf[0] = 0;
    for (int i = 0; i < FR_NLEVELS; i++) {
        if (only_runnable && !fr_runs_here(&fr_levels[i])) continue;
        if (buf[0]) strncat(buf, " ", size - strlen(buf) - 1);
        strncat(buf, fr_levels[i].name, size - strlen(buf) - 1);
    }
    return buf;
}

const char *fr_simd_built(void)
{
    static char buf[64];
    return fr_level_list(buf, sizeof buf, 0);
}

const char *fr_simd_cpu(void)
{
    static char buf[64];
    return fr_level_list(buf, sizeof buf, 1);
}

const char *fr_simd_detail(void)
{
    static char buf[32];
    const fr_level *lv = fr_level_now();
    snprintf(buf, sizeof buf, "%d-bit vectors", 8 * *lv->vbytes);
    return buf;
}

/* The public entry points: the chosen level's. */
int fr_rnn_forward_f32(float *out, float *h_n, float *states, float *xproj, const float *x, const float *h0,
                       const float *w_ih, const float *w_hh, const float *b_ih, const float *b_hh,
                       const fr_layer *L, fr_gemm_f32 gemm)
{
    return fr_level_now()->rnn_forward_f32(out, h_n, states, xproj, x, h0, w_ih, w_hh, b_ih, b_hh, L, gemm);
}

int fr_rnn_forward_f64(double *out, double *h_n, double *states, double *xproj, const double *x,
                       const double *h0, const double *w_ih, const double *w_hh, const double *b_ih,
                       const double *b_hh, const fr_layer *L, fr_gemm_f64 gemm)
{
    return fr_level_now()->rnn_forward_f64(out, h_n, states, xproj, x, h0, w_ih, w_hh, b_ih, b_hh, L, gemm);
}

int fr_rnn_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                        float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                        const float *states, const float *w_ih, const float *w_hh, const fr_layer *L,
                        fr_gemm_f32 gemm)
{
    return fr_level_now()->rnn_backward_f32(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states,
                                            w_ih, w_hh, L, gemm);
}

int fr_rnn_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih, double *db_hh,
                        double *dgh, double *dgx, const double *d_out, const double *d_hn, const double *x,
                        const double *states, const double *w_ih, const double *w_hh, const fr_layer *L,
                        fr_gemm_f64 gemm)
{
    return fr_level_now()->rnn_backward_f64(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states,
                                            w_ih, w_hh, L, gemm);
}

int fr_gru_forward_f32(float *out, float *h_n, float *states, float *gates, float *xproj, const float *x,
                       const float *h0, const float *w_ih, const float *w_hh, const float *b_ih,
                       const float *b_hh, const fr_layer *L, fr_gemm_f32 gemm)
{
    return fr_level_now()->gru_forward_f32(out, h_n, states, gates, xproj, x, h0, w_ih, w_hh, b_ih, b_hh, L, gemm);
}

int fr_gru_forward_f64(double *out, double *h_n, double *states, double *gates, double *xproj,
                       const double *x, const double *h0, const double *w_ih, const double *w_hh,
                       const double *b_ih, const double *b_hh, const fr_layer *L, fr_gemm_f64 gemm)
{
    return fr_level_now()->gru_forward_f64(out, h_n, states, gates, xproj, x, h0, w_ih, w_hh, b_ih, b_hh, L, gemm);
}

int fr_gru_backward_f32(float *dx, float *dh0, float *dw_ih, float *dw_hh, float *db_ih, float *db_hh,
                        float *dgh, float *dgx, const float *d_out, const float *d_hn, const float *x,
                        const float *states, const float *gates, const float *w_ih, const float *w_hh,
                        const fr_layer *L, fr_gemm_f32 gemm)
{
    return fr_level_now()->gru_backward_f32(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states,
                                            gates, w_ih, w_hh, L, gemm);
}

int fr_gru_backward_f64(double *dx, double *dh0, double *dw_ih, double *dw_hh, double *db_ih, double *db_hh,
                        double *dgh, double *dgx, const double *d_out, const double *d_hn, const double *x,
                        const double *states, const double *gates, const double *w_ih, const double *w_hh,
                        const fr_layer *L, fr_gemm_f64 gemm)
{
    return fr_level_now()->gru_backward_f64(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states,
                                            gates, w_ih, w_hh, L, gemm);
}
