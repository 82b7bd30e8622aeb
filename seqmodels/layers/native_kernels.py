"""The C source of :mod:`seqmodels.layers.native_scan`'s kernels (float32 and float64 each).

All take contiguous batch-major tensors, each step a contiguous row of ``N`` (or ``H``) values,
so the carried state stays in L1. The min-RNN kernels work on a range of rows ``r0 .. r1`` of
the flattened ``[B*T, ...]`` sequences (row ``r`` is step ``r % T`` of sequence ``r / T``), so
the caller can run the product and the scan block by block while a block is in cache:

- ``affine_fwd``/``affine_bwd``: ``h_t = a_t h_{t-1} + b_t`` (forward or reverse in time) and
  its backward: ``g_t = dL/dh_t + a_{t+1} g_{t+1}``, ``dL/da_t = g_t h_{t-1}``,
  ``dL/db_t = g_t``, ``dL/dh0 = a_1 g_1``.
- ``mingru_fwd``/``minlstm_fwd``: a min-RNN layer-direction from its bias-free pre-activations
  ``pre [rows, 2H | 3H]`` and the bias, ``h_t = h_{t-1} + z_t (g(v_t) - h_{t-1})`` with
  ``z = sigmoid(k)`` (minGRU) or ``i / (f + i)`` (minLSTM), the equations of
  :mod:`seqmodels.layers.min_rnn`; ``*_bwd`` (rows from ``r1 - 1`` down to ``r0``, the carried
  gradient kept in ``work`` between calls) recompute the gates from ``pre`` (a few
  exponentials cost less than storing and re-reading them) while the gradient runs back in time,
  ``g_t = dL/dh_t + (1 - z_{t+1}) g_{t+1}``, writing ``dL/dpre`` and summing ``dL/dbias``.
- ``mingru_infer``/``minlstm_infer``: the forward without a gradient inside a stack: the state
  stays in a carried row (one per layer, so a stack can run block by block through all its
  layers), and each row also gets the residual add and the next layer's LayerNorm, written as
  the residual stream and the next layer's input.

``#pragma GCC ivdep`` tells gcc the steps of a row never depend on each other (the pointers do
not overlap, or overlap only at the same index), so it vectorises the loops, exponentials
included (libmvec, with ``MVEC``).
"""

from string import Template

# libmvec's vector exp (glibc, x86-64): lets the compiler vectorise the gate loops.
MVEC = """
#pragma omp declare simd notinbranch
extern float expf(float);
#pragma omp declare simd notinbranch
extern double exp(double);
"""
_BODY = Template(r"""
void affine_fwd_$s(const $r* a, const $r* b, const $r* h0, $r* h, long B, long T, long N,
                   int rev) {
    for (long i = 0; i < B; ++i) {
        const $r* prev = h0 + i * N;
        for (long s = 0; s < T; ++s) {
            long o = (i * T + (rev ? T - 1 - s : s)) * N;
            const $r* at = a + o; const $r* bt = b + o; $r* ht = h + o;
            for (long j = 0; j < N; ++j) ht[j] = at[j] * prev[j] + bt[j];
            prev = ht;
        }
    }
}
void affine_bwd_$s(const $r* a, const $r* h0, const $r* h, const $r* gh, $r* ga, $r* gb,
                   $r* gh0, long B, long T, long N, int rev) {
    for (long i = 0; i < B; ++i) {
        for (long s = 0; s < T; ++s) {  /* backward runs against the scan's direction */
            long t = rev ? s : T - 1 - s, o = (i * T + t) * N;
            long later = (i * T + (rev ? t - 1 : t + 1)) * N;
            long before = (i * T + (rev ? t + 1 : t - 1)) * N;
            const $r* hp = (rev ? t == T - 1 : t == 0) ? h0 + i * N : h + before;
            $r* g = gb + o;
            if (s == 0) for (long j = 0; j < N; ++j) g[j] = gh[o + j];
            else for (long j = 0; j < N; ++j) g[j] = gh[o + j] + a[later + j] * gb[later + j];
            for (long j = 0; j < N; ++j) ga[o + j] = g[j] * hp[j];
        }
        long first = (i * T + (rev ? T - 1 : 0)) * N;
        for (long j = 0; j < N; ++j) gh0[i * N + j] = a[first + j] * gb[first + j];
    }
}
/* g(v) = v + 0.5 (v >= 0), sigmoid(v) (v < 0) = max(v + 0.5, sigmoid(v)) */
/* one step: ht from the step's pre-activations k (z, then h~) and prev (ht may be prev) */
static inline void mingru_row_$s(const $r* k, const $r* bias, const $r* prev, $r* ht, long H) {
    const $r* u = k + H; const $r* bk = bias; const $r* bu = bias + H;
    #pragma GCC ivdep  /* no step reads another j's values */
    for (long j = 0; j < H; ++j) {
        $r z = 1 / (1 + $exp(-(k[j] + bk[j]))), v = u[j] + bu[j];
        $r c = MAX(v + ($r)0.5, 1 / (1 + $exp(-v)));
        ht[j] = prev[j] + z * (c - prev[j]);
    }
}
void mingru_bwd_$s(const $r* pre, const $r* bias, const $r* h0, const $r* h, const $r* gh,
                   $r* gpre, double* gbias, $r* gh0, $r* work, long T, long H, long r0,
                   long r1) {
    const $r* bk = bias; const $r* bu = bias + H;
    $r* carry = work; $r* acc = work + H;  /* (1 - z_{t+1}) g_{t+1}; dbias not yet in gbias */
    for (long j = 0; j < 2 * H; ++j) acc[j] = 0;
    for (long r = r1 - 1; r >= r0; --r) {  /* gpre holds rows r0 .. r1 - 1 */
        long t = r % T, o = r * H;
        if (t == T - 1) for (long j = 0; j < H; ++j) carry[j] = 0;
        {
            const $r* k = pre + 2 * o; const $r* u = k + H; $r* dk = gpre + 2 * (r - r0) * H;
            $r* du = dk + H;
            const $r* hp = t ? h + o - H : h0 + (r / T) * H;
            #pragma GCC ivdep  /* no step reads another j's values */
            for (long j = 0; j < H; ++j) {
                $r z = 1 / (1 + $exp(-(k[j] + bk[j]))), v = u[j] + bu[j];
                $r sg = 1 / (1 + $exp(-v)), c = MAX(v + ($r)0.5, sg);
                $r g = gh[o + j] + carry[j], gz = g * z;
                dk[j] = gz * (1 - z) * (c - hp[j]);
                du[j] = gz * (v >= 0 ? ($r)1 : sg * (1 - sg));
                acc[j] += dk[j]; acc[H + j] += du[j];
                carry[j] = g - gz;
            }
        }
        if (t == 0) for (long j = 0; j < H; ++j) gh0[(r / T) * H + j] = carry[j];
        if (t == 0 || r == r0) {  /* into gbias in double, a sequence or a block at a time */
            for (long j = 0; j < 2 * H; ++j) { gbias[j] += acc[j]; acc[j] = 0; }
        }
    }
}
/* z = i / (f + i) = (1 + e_f) / (2 + e_f + e_i), e_k = exp(-k), each term scaled by exp(-m),
   m = max(0, -k_f, -k_i): nothing overflows, and the largest term is exactly 1, so two
   exponentials give all three (r, s: the larger and smaller of -k_f, -k_i). */
static inline $r minlstm_z_$s($r k_f, $r k_i) {
    $r p = -k_f, q = -k_i, r = MAX(p, q), s = p > q ? q : p;
    $r e1 = $exp(r > 0 ? -r : r), e2 = $exp(s - MAX(r, ($r)0));
    $r one = r > 0 ? e1 : ($r)1, big = r > 0 ? ($r)1 : e1;  /* e^-m; e^(r-m) */
    $r ef = p >= q ? big : e2, ei = p >= q ? e2 : big;
    return (one + ef) / (2 * one + ef + ei);
}
/* Whether every unit of a step can take z = (1 + e^-k_f) / (2 + e^-k_f + e^-k_i) as it stands:
   no -k above $lim, so nothing overflows. That form skips minlstm_z's rescaling (about a third
   of the kernel's time measured); a step with a larger -k takes minlstm_z. */
static inline int minlstm_plain_$s(const $r* kf, const $r* ki, const $r* bf, const $r* bi,
                                   long H) {
    $r worst = 0;
    #pragma omp simd reduction(max:worst)
    for (long j = 0; j < H; ++j) worst = MAX(worst, MAX(-(kf[j] + bf[j]), -(ki[j] + bi[j])));
    return worst <= $lim;
}
static inline void minlstm_row_$s(const $r* kf, const $r* bias, const $r* prev, $r* ht,
                                  long H) {
    const $r* ki = kf + H; const $r* u = kf + 2 * H;
    const $r* bf = bias; const $r* bi = bias + H; const $r* bu = bias + 2 * H;
    if (minlstm_plain_$s(kf, ki, bf, bi, H)) {
        #pragma GCC ivdep  /* no step reads another j's values */
        for (long j = 0; j < H; ++j) {
            $r f = kf[j] + bf[j], n = ki[j] + bi[j], v = u[j] + bu[j];
            $r ef = $exp(-f), ei = $exp(-n), z = (1 + ef) / (2 + ef + ei);
            $r c = MAX(v + ($r)0.5, 1 / (1 + $exp(-v)));
            ht[j] = prev[j] + z * (c - prev[j]);
        }
    } else {
        #pragma GCC ivdep
        for (long j = 0; j < H; ++j) {
            $r f = kf[j] + bf[j], n = ki[j] + bi[j], v = u[j] + bu[j];
            $r z = minlstm_z_$s(f, n);
            $r c = MAX(v + ($r)0.5, 1 / (1 + $exp(-v)));
            ht[j] = prev[j] + z * (c - prev[j]);
        }
    }
}
/* a layer-direction's states over rows r0 .. r1 - 1 (row r = i * T + t; pre holds those rows) */
#define MIN_FWD(cell, K) \
void cell##_fwd_$s(const $r* pre, const $r* bias, const $r* h0, $r* h, long T, long H, \
                   long r0, long r1) { \
    for (long r = r0; r < r1; ++r) \
        cell##_row_$s(pre + (r - r0) * K * H, bias, r % T ? h + (r - 1) * H : h0 + (r / T) * H, \
                      h + r * H, H); \
}
MIN_FWD(mingru, 2)
MIN_FWD(minlstm, 3)
#undef MIN_FWD
/* Inference through a stack, one row at a time: the step's state into carry (the previous
   row's state, or h0 at a sequence's first step), the last step's into last[i]; then the
   residual stream s = res + h (h without res) into out (into y where out is NULL; out may be
   res), and the next layer's input y = LayerNorm(s) * gamma + beta (y = s without gamma).
   res, out and y hold rows r0 .. r1 - 1 only, like pre. */
static inline void finish_row_$s(const $r* h, const $r* res, $r* out, const $r* gamma,
                                 const $r* beta, $r eps, $r* y, long H) {
    $r* s = out ? out : y; $r mean = 0, var = 0;
    if (res) {
        #pragma omp simd
        for (long j = 0; j < H; ++j) s[j] = res[j] + h[j];
    } else {
        #pragma omp simd
        for (long j = 0; j < H; ++j) s[j] = h[j];
    }
    if (!gamma) return;
    #pragma omp simd reduction(+:mean)
    for (long j = 0; j < H; ++j) mean += s[j];
    mean /= H;
    #pragma omp simd reduction(+:var)
    for (long j = 0; j < H; ++j) var += (s[j] - mean) * (s[j] - mean);
    $r rstd = 1 / $sqrt(var / H + eps);
    #pragma omp simd
    for (long j = 0; j < H; ++j) y[j] = (s[j] - mean) * rstd * gamma[j] + beta[j];
}
#define MIN_INFER(cell, K) \
void cell##_infer_$s(const $r* pre, const $r* bias, const $r* h0, $r* carry, const $r* res, \
                     $r* out, const $r* gamma, const $r* beta, double eps, $r* y, $r* last, \
                     long T, long H, long r0, long r1) { \
    for (long r = r0; r < r1; ++r) { \
        long t = r % T, i = r / T; \
        cell##_row_$s(pre + (r - r0) * K * H, bias, t ? carry : h0 + i * H, carry, H); \
        if (t == T - 1) for (long j = 0; j < H; ++j) last[i * H + j] = carry[j]; \
        long o = (r - r0) * H; \
        finish_row_$s(carry, res ? res + o : 0, out ? out + o : 0, gamma, beta, ($r)eps, y + o, \
                      H); \
    } \
}
MIN_INFER(mingru, 2)
MIN_INFER(minlstm, 3)
#undef MIN_INFER
/* the rest of a backward step, given sigmoid(-k_f) and sigmoid(-k_i) */
#undef MINLSTM_BWD_TAIL
#define MINLSTM_BWD_TAIL(sf, si) \
    $r sg = 1 / (1 + $exp(-v)), c = MAX(v + ($r)0.5, sg); \
    $r g = gh[o + j] + carry[j], gz = g * z; \
    /* z = sigmoid(log i - log f); d log sigmoid(k) / dk = sigmoid(-k) */ \
    $r dd = gz * (1 - z) * (c - hp[j]); \
    df[j] = -dd * (sf); di[j] = dd * (si); \
    du[j] = gz * (v >= 0 ? ($r)1 : sg * (1 - sg)); \
    acc[j] += df[j]; acc[H + j] += di[j]; acc[2 * H + j] += du[j]; \
    carry[j] = g - gz;
void minlstm_bwd_$s(const $r* pre, const $r* bias, const $r* h0, const $r* h, const $r* gh,
                    $r* gpre, double* gbias, $r* gh0, $r* work, long T, long H, long r0,
                    long r1) {
    const $r* bf = bias; const $r* bi = bias + H; const $r* bu = bias + 2 * H;
    $r* carry = work; $r* acc = work + H;
    for (long j = 0; j < 3 * H; ++j) acc[j] = 0;
    for (long r = r1 - 1; r >= r0; --r) {  /* gpre holds rows r0 .. r1 - 1 */
        long t = r % T, o = r * H;
        if (t == T - 1) for (long j = 0; j < H; ++j) carry[j] = 0;
        {
            const $r* kf = pre + 3 * o; const $r* ki = kf + H; const $r* u = kf + 2 * H;
            $r* df = gpre + 3 * (r - r0) * H; $r* di = df + H; $r* du = df + 2 * H;
            const $r* hp = t ? h + o - H : h0 + (r / T) * H;
            if (minlstm_plain_$s(kf, ki, bf, bi, H)) {
                #pragma GCC ivdep  /* no step reads another j's values */
                for (long j = 0; j < H; ++j) {
                    $r f = kf[j] + bf[j], n = ki[j] + bi[j], v = u[j] + bu[j];
                    $r ef = $exp(-f), ei = $exp(-n), z = (1 + ef) / (2 + ef + ei);
                    /* sigmoid(-k) = e^-k / (1 + e^-k): no more exponentials */
                    MINLSTM_BWD_TAIL(ef / (1 + ef), ei / (1 + ei))
                }
            } else {
                #pragma GCC ivdep
                for (long j = 0; j < H; ++j) {
                    $r f = kf[j] + bf[j], n = ki[j] + bi[j], v = u[j] + bu[j];
                    $r z = minlstm_z_$s(f, n);
                    MINLSTM_BWD_TAIL(1 / (1 + $exp(f)), 1 / (1 + $exp(n)))
                }
            }
        }
        if (t == 0) for (long j = 0; j < H; ++j) gh0[(r / T) * H + j] = carry[j];
        if (t == 0 || r == r0) {  /* into gbias in double, a sequence or a block at a time */
            for (long j = 0; j < 3 * H; ++j) { gbias[j] += acc[j]; acc[j] = 0; }
        }
    }
}
""")
# (a comparison, not fmax: fmax's rules for NaN and signed zeros keep gcc from vectorising it)
SOURCE = "#define MAX(x, y) ((x) > (y) ? (x) : (y))\n" + "".join(
    _BODY.substitute(s=s, r=r, exp=exp, sqrt=sqrt, lim=lim)
    for s, r, exp, sqrt, lim in (
        ("f32", "float", "expf", "sqrtf", "80"),
        ("f64", "double", "exp", "sqrt", "700"),
    )
)
