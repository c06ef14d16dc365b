/* The C kernels through their public entry points, for tests/test_aarch64.py: a GRU (both variants, with
   lengths and reverse for one) and an RNN (tanh, relu), forward and backward; every output printed, to be
   compared with the same program built for x86-64, whose kernels the Python suite checks against the
   reference. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include "fastrnn.h"

static uint64_t seed = 88172645463325252ull;
static float rnd(void) { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return (float)((seed >> 11) * (1.0 / 9007199254740992.0)) - 0.5f; }
static float *arr(size_t n, int fill) { float *a = malloc(sizeof(float) * (n ? n : 1)); for (size_t i = 0; i < n; i++) a[i] = fill ? rnd() : 0; return a; }
static void dump(const char *name, const float *a, size_t n) { for (size_t i = 0; i < n; i++) printf("%s %zu %.9g\n", name, i, a[i]); }

int main(void)
{
    const int64_t T = 7, B = 5, I = 9, H = 13;
    int64_t lengths[5] = {7, 0, 3, 5, 1};
    for (int cell = 0; cell < 4; cell++) {    /* 0: GRU reset after, 1: GRU reset before (lengths, reverse), 2: RNN tanh, 3: RNN relu */
        int gru = cell < 2, G = gru ? 3 : 1;
        fr_layer L = {T, B, I, H, cell == 1 ? lengths : NULL, cell == 1, cell == 0 ? FR_GRU_RESET_AFTER :
                      cell == 1 ? FR_GRU_RESET_BEFORE : cell == 2 ? FR_RNN_TANH : FR_RNN_RELU, 2};
        size_t BH = B * H, GH = G * H;
        float *x = arr(T * B * I, 1), *h0 = arr(BH, 1), *w_ih = arr(GH * I, 1), *w_hh = arr(GH * H, 1);
        float *b_ih = arr(GH, 1), *b_hh = arr(GH, 1), *d_out = arr(T * BH, 1), *d_hn = arr(BH, 1);
        float *out = arr(T * BH, 0), *h_n = arr(BH, 0), *states = arr((T + 1) * BH, 0), *gates = arr(T * 4 * BH, 0);
        float *xproj = arr(T * B * GH, 0), *dx = arr(T * B * I, 0), *dh0 = arr(BH, 0), *dw_ih = arr(GH * I, 0);
        float *dw_hh = arr(GH * H, 0), *db_ih = arr(GH, 0), *db_hh = arr(GH, 0), *dgh = arr(T * B * GH, 0);
        float *dgx = arr(T * B * GH, 0);
        int rc = gru ? fr_gru_forward_f32(out, h_n, states, gates, xproj, x, h0, w_ih, w_hh, b_ih, b_hh, &L, NULL)
                     : fr_rnn_forward_f32(out, h_n, states, xproj, x, h0, w_ih, w_hh, b_ih, b_hh, &L, NULL);
        if (rc) { fprintf(stderr, "forward rc %d\n", rc); return 1; }
        rc = gru ? fr_gru_backward_f32(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, gates,
                                       w_ih, w_hh, &L, NULL)
                 : fr_rnn_backward_f32(dx, dh0, dw_ih, dw_hh, db_ih, db_hh, dgh, dgx, d_out, d_hn, x, states, w_ih,
                                       w_hh, &L, NULL);
        if (rc) { fprintf(stderr, "backward rc %d\n", rc); return 1; }
        char n[32];
        const char *names[] = {"out", "h_n", "dx", "dh0", "dw_ih", "dw_hh", "db_ih", "db_hh"};
        const float *vals[] = {out, h_n, dx, dh0, dw_ih, dw_hh, db_ih, db_hh};
        size_t sizes[] = {T * BH, BH, T * B * I, BH, GH * I, GH * H, GH, GH};
        for (int k = 0; k < 8; k++) { snprintf(n, sizeof n, "c%d.%s", cell, names[k]); dump(n, vals[k], sizes[k]); }
    }
    printf("simd %s\n", fr_simd());
    return 0;
}
