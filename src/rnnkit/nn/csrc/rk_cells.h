/* rnnkit kernels: the element-wise passes of the LSTM and tanh-RNN cells, forward and backward. */
#ifndef RK_CELLS_H
#define RK_CELLS_H

#include <stddef.h>
#include "rk_math.h"

/* ---- LSTM, one step, all B rows, columns j0 .. j1-1 of H (a thread's share) -------------
   a [B, 4H]: pre-activations in (gate order i, f, g, o), activated gates out;
   c_prev [B, H] -> c [B, H] and h [B, H]. peep [3, H] (rows i, f, o) or NULL. Peepholes
   after Gers, Schraudolph & Schmidhuber (2002): i and f see c_{t-1}, o sees the new c_t.
   Without a forget gate (Hochreiter & Schmidhuber 1997) c_t = c_{t-1} + i*g and the f slot
   of the gates is set to 0. Every pointer is `restrict` so that the loops vectorise. */
#define RK_LSTM_CELL(AI, AF, AG, AO, CPJ)                                                   \
        float i = rk_sigmoid((AI) + (use_peep ? pi[j] * (CPJ) : 0.0f));                     \
        float f = fg ? rk_sigmoid((AF) + (use_peep ? pf[j] * (CPJ) : 0.0f)) : 0.0f;         \
        float g = rk_tanh(AG);                                                              \
        float cj = (fg ? f * (CPJ) : (CPJ)) + i * g;                                        \
        float o = rk_sigmoid((AO) + (use_peep ? po[j] * cj : 0.0f));
RK_INLINE void rk_lstm_fwd_row(int n, float* restrict ai, float* restrict af,
                               float* restrict ag, float* restrict ao,
                               const float* restrict cp, float* restrict c,
                               float* restrict h, const float* restrict pi,
                               const float* restrict pf, const float* restrict po,
                               const int use_peep, const int fg) {
    for (int j = 0; j < n; j++) {
        RK_LSTM_CELL(ai[j], af[j], ag[j], ao[j], cp[j])
        ai[j] = i; af[j] = f; ag[j] = g; ao[j] = o;
        c[j] = cj;
        h[j] = o * rk_tanh(cj);
    }
}
/* the single step: c [B, H] updated in place, the gates not kept */
RK_INLINE void rk_lstm_step_row(int n, const float* restrict ai, const float* restrict af,
                                const float* restrict ag, const float* restrict ao,
                                float* restrict c, float* restrict h,
                                const float* restrict pi, const float* restrict pf,
                                const float* restrict po, const int use_peep, const int fg) {
    for (int j = 0; j < n; j++) {
        float cpj = c[j];
        RK_LSTM_CELL(ai[j], af[j], ag[j], ao[j], cpj)
        (void)f;
        c[j] = cj;
        h[j] = o * rk_tanh(cj);
    }
}
#define RK_VARIANTS(CALL)                                     \
    if (peep) { if (fg) CALL(1, 1) else CALL(1, 0) }           \
    else { if (fg) CALL(0, 1) else CALL(0, 0) }
RK_INLINE void rk_lstm_fwd_cell_impl(int B, int H, int j0, int j1, float* a, const float* c_prev,
                             float* c, float* h, const float* peep, int fg) {
    const float *pi = peep ? peep + j0 : 0, *pf = peep ? peep + H + j0 : 0;
    const float *po = peep ? peep + 2 * H + j0 : 0;
    int n = j1 - j0;
    for (int b = 0; b < B; b++) {
        float* ab = a + (size_t)b * 4 * H + j0;
        const float* cp = c_prev + (size_t)b * H + j0;
        float* cb = c + (size_t)b * H + j0; float* hb = h + (size_t)b * H + j0;
        #define RK_CALL(P, F) rk_lstm_fwd_row(n, ab, ab + H, ab + 2 * H, ab + 3 * H, cp, cb, hb, pi, pf, po, P, F);
        RK_VARIANTS(RK_CALL)
        #undef RK_CALL
    }
}
RK_MULTI(rk_lstm_fwd_cell, (int B, int H, int j0, int j1, float* a, const float* c_prev,
                             float* c, float* h, const float* peep, int fg),
         (B, H, j0, j1, a, c_prev, c, h, peep, fg))
RK_INLINE void rk_lstm_step_cell_impl(int B, int H, int j0, int j1, const float* a, float* c,
                              float* h, const float* peep, int fg) {
    const float *pi = peep ? peep + j0 : 0, *pf = peep ? peep + H + j0 : 0;
    const float *po = peep ? peep + 2 * H + j0 : 0;
    int n = j1 - j0;
    for (int b = 0; b < B; b++) {
        const float* ab = a + (size_t)b * 4 * H + j0;
        float* cb = c + (size_t)b * H + j0; float* hb = h + (size_t)b * H + j0;
        #define RK_CALL(P, F) rk_lstm_step_row(n, ab, ab + H, ab + 2 * H, ab + 3 * H, cb, hb, pi, pf, po, P, F);
        RK_VARIANTS(RK_CALL)
        #undef RK_CALL
    }
}
RK_MULTI(rk_lstm_step_cell, (int B, int H, int j0, int j1, const float* a, float* c,
                              float* h, const float* peep, int fg),
         (B, H, j0, j1, a, c, h, peep, fg))

/* Backward through one step, columns j0 .. j1-1. gates [B, 4H] activated (i, f, g, o);
   c_prev, c [B, H]; dh [B, H] from above and dh_rec [B, H] through the recurrence (their
   sum is dL/dh_t); dc [B, H]: dL/dc_t from step t+1 in, dL/dc_{t-1} out; dgates [B, 4H]
   out: dL/d(pre-activation); dpeep [3, H] accumulated. */
RK_INLINE void rk_lstm_bwd_row(int n, const float* restrict gi, const float* restrict gf,
                               const float* restrict gg, const float* restrict go,
                               const float* restrict cp, const float* restrict c,
                               const float* restrict dh, const float* restrict dhr,
                               float* restrict dc, float* restrict dgi, float* restrict dgf,
                               float* restrict dgg, float* restrict dgo,
                               const float* restrict pi, const float* restrict pf,
                               const float* restrict po, float* restrict dpi,
                               float* restrict dpf, float* restrict dpo,
                               const int use_peep, const int fg) {
    for (int j = 0; j < n; j++) {
        float i = gi[j], f = gf[j], g = gg[j], o = go[j], cj = c[j], cpj = cp[j];
        float tc = rk_tanh(cj);
        float dht = dh[j] + dhr[j];
        float dao = dht * tc * o * (1.0f - o);
        float dct = dc[j] + dht * o * (1.0f - tc * tc);
        if (use_peep) dct += dao * po[j];                    /* o_t saw c_t */
        float dai = dct * g * i * (1.0f - i);
        float dag = dct * i * (1.0f - g * g);
        float daf = fg ? dct * cpj * f * (1.0f - f) : 0.0f;
        float dcp = fg ? dct * f : dct;
        if (use_peep) {                                      /* i_t and f_t saw c_{t-1} */
            dcp += dai * pi[j] + daf * pf[j];
            dpi[j] += dai * cpj;
            dpf[j] += daf * cpj;
            dpo[j] += dao * cj;
        }
        dc[j] = dcp;
        dgi[j] = dai; dgf[j] = daf; dgg[j] = dag; dgo[j] = dao;
    }
}
RK_INLINE void rk_lstm_bwd_cell_impl(int B, int H, int j0, int j1, const float* gates,
                             const float* c_prev, const float* c, const float* dh,
                             const float* dh_rec, float* dc, float* dgates, const float* peep,
                             float* dpeep, int fg) {
    const float *pi = peep ? peep + j0 : 0, *pf = peep ? peep + H + j0 : 0;
    const float *po = peep ? peep + 2 * H + j0 : 0;
    float *dpi = dpeep ? dpeep + j0 : 0, *dpf = dpeep ? dpeep + H + j0 : 0;
    float *dpo = dpeep ? dpeep + 2 * H + j0 : 0;
    int n = j1 - j0;
    for (int b = 0; b < B; b++) {
        size_t o4 = (size_t)b * 4 * H + j0, o1 = (size_t)b * H + j0;
        const float* gt = gates + o4; float* dg = dgates + o4;
        #define RK_CALL(P, F) rk_lstm_bwd_row(n, gt, gt + H, gt + 2 * H, gt + 3 * H, c_prev + o1, c + o1, dh + o1, dh_rec + o1, dc + o1, dg, dg + H, dg + 2 * H, dg + 3 * H, pi, pf, po, dpi, dpf, dpo, P, F);
        RK_VARIANTS(RK_CALL)
        #undef RK_CALL
    }
}
RK_MULTI(rk_lstm_bwd_cell, (int B, int H, int j0, int j1, const float* gates,
                             const float* c_prev, const float* c, const float* dh,
                             const float* dh_rec, float* dc, float* dgates, const float* peep,
                             float* dpeep, int fg),
         (B, H, j0, j1, gates, c_prev, c, dh, dh_rec, dc, dgates, peep, dpeep, fg))

/* ---- tanh RNN, rows of [B, H], columns j0 .. j1-1 ---------------------------------------- */
RK_INLINE void rk_tanh_rows_impl(int B, int H, int j0, int j1, float* a) {
    for (int b = 0; b < B; b++) {
        float* restrict ab = a + (size_t)b * H;
        for (int j = j0; j < j1; j++) ab[j] = rk_tanh(ab[j]);
    }
}
RK_MULTI(rk_tanh_rows, (int B, int H, int j0, int j1, float* a),
         (B, H, j0, j1, a))
/* da = (dh + dh_rec) * (1 - h^2) */
RK_INLINE void rk_rnn_bwd_cell_impl(int B, int H, int j0, int j1, const float* h, const float* dh,
                            const float* dh_rec, float* da) {
    for (int b = 0; b < B; b++) {
        size_t o = (size_t)b * H;
        const float* restrict hb = h + o; const float* restrict dhb = dh + o;
        const float* restrict dhrb = dh_rec + o; float* restrict dab = da + o;
        for (int j = j0; j < j1; j++) dab[j] = (dhb[j] + dhrb[j]) * (1.0f - hb[j] * hb[j]);
    }
}
RK_MULTI(rk_rnn_bwd_cell, (int B, int H, int j0, int j1, const float* h, const float* dh,
                            const float* dh_rec, float* da),
         (B, H, j0, j1, h, dh, dh_rec, da))

#endif /* RK_CELLS_H */
