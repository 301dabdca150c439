/*
 * One-pass counter-based samplers for torchinit's seeded init on CPU (loaded with ctypes by
 * torchinit/init/native.py; plain C99, no Python or torch headers).
 *
 * Element i of a tensor is output word i % 4 of Philox-4x32-10 at counter i / 4 (counter c is the
 * 128-bit block (c_lo, c_hi, 0, 0), the key is (key_lo, key_hi)): Triton's tl.randint4x layout, and that
 * of the torch reference in torchinit/init/philox.py. A word becomes a uniform as Triton's
 * uint_to_uniform_float does (bitcast to int32, ~x for negatives, int32 -> fp32, times the fp32 scale).
 * Every fp32 operation below is one of the torch reference's operations in the same order, rounded once
 * (build with -ffp-contract=off and without -ffast-math, so a*b+c stays two roundings):
 *
 *   uniform       v = u * span + lo
 *   normal        r = sqrt(-2 log(max(u0, 1e-7))), t = u1 * 2pi, (z0, z1) = (r cos t, r sin t), v = z * std + mean
 *   trunc_normal  Giles' erfinv of the uniform mapped into [Phi(alpha), Phi(beta)] (sampling.py), clamped
 *
 * sin, cos and truncated normal's log are evaluated in double precision and rounded once to fp32, so
 * each is within 0.5 ulp plus about 1e-12 relative of the exact value; Box-Muller's log is an fp32 one
 * within 0.96 ulp (its error is halved by the sqrt); torch's vectorised fp32 functions are within 1 ulp;
 * sqrt is the correctly rounded hardware instruction in both.
 *
 * The work runs over chunks of CHUNK counters held in arrays on the stack (structure of arrays, so the
 * loops auto-vectorise), and the values are written once, in the output's dtype: fp32, fp64 (exact),
 * bf16 or fp16 (round to nearest even, as torch's Tensor.to). On x86-64 the whole pipeline is compiled
 * three times, for AVX-512F, AVX2 and the baseline, with Philox's rounds written with the vector unit's
 * 32x32->64 multiply (one 32-bit word per 64-bit lane, no shuffles); the best one the CPU has runs. All
 * three give the same bits (integer Philox, and the same fp32/fp64 operations in the same order).
 */
#include <stdint.h>
#include <string.h>

#define CHUNK 256

#if defined(__GNUC__) && defined(__x86_64__)
#define TI_X86 1
#include <immintrin.h>
#else
#define TI_X86 0
#endif

#if defined(__GNUC__)
#define TI_INLINE static inline __attribute__((always_inline))
#define TI_EXPORT __attribute__((visibility("default")))
#else
#define TI_INLINE static inline
#define TI_EXPORT
#endif

/* A decimal constant rounded first to double, then to float: what a Python float becomes in an fp32
 * torch or Triton op. */
#define F32(x) ((float)(x))

enum { KIND_UNIFORM = 0, KIND_NORMAL = 1, KIND_TRUNC = 2 };
enum { OUT_F32 = 0, OUT_F64 = 1, OUT_BF16 = 2, OUT_F16 = 3 };

/* Scalars of a fill, all fp32 (sampling.py rounds them): s0/s1 are lo/span (uniform) or mean/std;
 * p_lo, p_span, zlo, zhi the truncated normal's CDF interval and bounds in std units; lo_clip/hi_clip
 * the bounds of its final clamp. */
typedef struct {
    float s0, s1, p_lo, p_span, zlo, zhi, lo_clip, hi_clip;
} params;

TI_INLINE uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
TI_INLINE float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
TI_INLINE float minf(float a, float b) { return b < a ? b : a; }
TI_INLINE float maxf(float a, float b) { return a < b ? b : a; }

/* ---- Philox-4x32-10 over CHUNK counters (structure of arrays) ---- */

/* Portable form (auto-vectorised by the compiler) */
static void philox_generic(const uint64_t *ctr, int m, uint64_t key, uint32_t *w0, uint32_t *w1,
                           uint32_t *w2, uint32_t *w3) {
    const uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    for (int i = 0; i < m; i++) {
        uint32_t x0 = (uint32_t)ctr[i], x1 = (uint32_t)(ctr[i] >> 32), x2 = 0, x3 = 0;
        uint32_t a = k0, b = k1;
#pragma GCC unroll 10
        for (int r = 0; r < 10; r++) {
            uint64_t p0 = (uint64_t)x0 * 0xD2511F53u;
            uint64_t p1 = (uint64_t)x2 * 0xCD9E8D57u;
            uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ a;
            uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ b;
            x1 = (uint32_t)p1;
            x3 = (uint32_t)p0;
            x0 = y0;
            x2 = y2;
            a += 0x9E3779B9u;
            b += 0xBB67AE85u;
        }
        w0[i] = x0; w1[i] = x1; w2[i] = x2; w3[i] = x3;
    }
}

#if TI_X86
/* One 32-bit word per 64-bit lane (its high half is don't-care): the unsigned 32x32->64 multiply of the
 * lanes' low halves is one instruction and the round needs no shuffles; only low halves are stored. */
#define TI_PHILOX_ROUNDS(V, MUL, SRL, XOR, SET1)                                   \
    do {                                                                           \
        uint32_t ka = k0, kb = k1;                                                 \
        for (int r = 0; r < 10; r++) {                                             \
            V p0 = MUL(x0, SET1(0xD2511F53u));                                     \
            V p1 = MUL(x2, SET1(0xCD9E8D57u));                                     \
            V y0 = XOR(XOR(SRL(p1, 32), x1), SET1(ka));                            \
            V y2 = XOR(XOR(SRL(p0, 32), x3), SET1(kb));                            \
            x1 = p1; x3 = p0; x0 = y0; x2 = y2;                                    \
            ka += 0x9E3779B9u; kb += 0xBB67AE85u;                                  \
        }                                                                          \
    } while (0)

__attribute__((target("avx2"))) static void philox_avx2(const uint64_t *ctr, int m, uint64_t key, uint32_t *w0,
                                                         uint32_t *w1, uint32_t *w2, uint32_t *w3) {
    const uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    const __m256i pack = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    int i = 0;
    for (; i + 4 <= m; i += 4) {
        __m256i c = _mm256_loadu_si256((const __m256i *)(ctr + i));
        __m256i x0 = c, x1 = _mm256_srli_epi64(c, 32), x2 = _mm256_setzero_si256(), x3 = x2;
#define TI_SET1_256(v) _mm256_set1_epi64x((long long)(uint64_t)(v))
        TI_PHILOX_ROUNDS(__m256i, _mm256_mul_epu32, _mm256_srli_epi64, _mm256_xor_si256, TI_SET1_256);
#undef TI_SET1_256
        _mm_storeu_si128((__m128i *)(w0 + i), _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x0, pack)));
        _mm_storeu_si128((__m128i *)(w1 + i), _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x1, pack)));
        _mm_storeu_si128((__m128i *)(w2 + i), _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x2, pack)));
        _mm_storeu_si128((__m128i *)(w3 + i), _mm256_castsi256_si128(_mm256_permutevar8x32_epi32(x3, pack)));
    }
    if (i < m) philox_generic(ctr + i, m - i, key, w0 + i, w1 + i, w2 + i, w3 + i);
}

__attribute__((target("avx512f"))) static void philox_avx512(const uint64_t *ctr, int m, uint64_t key,
                                                              uint32_t *w0, uint32_t *w1, uint32_t *w2,
                                                              uint32_t *w3) {
    const uint32_t k0 = (uint32_t)key, k1 = (uint32_t)(key >> 32);
    int i = 0;
    for (; i + 8 <= m; i += 8) {
        __m512i c = _mm512_loadu_si512((const void *)(ctr + i));
        __m512i x0 = c, x1 = _mm512_srli_epi64(c, 32), x2 = _mm512_setzero_si512(), x3 = x2;
#define TI_SET1_512(v) _mm512_set1_epi64((long long)(uint64_t)(v))
        TI_PHILOX_ROUNDS(__m512i, _mm512_mul_epu32, _mm512_srli_epi64, _mm512_xor_si512, TI_SET1_512);
#undef TI_SET1_512
        _mm256_storeu_si256((__m256i *)(w0 + i), _mm512_cvtepi64_epi32(x0));
        _mm256_storeu_si256((__m256i *)(w1 + i), _mm512_cvtepi64_epi32(x1));
        _mm256_storeu_si256((__m256i *)(w2 + i), _mm512_cvtepi64_epi32(x2));
        _mm256_storeu_si256((__m256i *)(w3 + i), _mm512_cvtepi64_epi32(x3));
    }
    if (i < m) philox_generic(ctr + i, m - i, key, w0 + i, w1 + i, w2 + i, w3 + i);
}
#endif

enum { ISA_GENERIC = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

TI_INLINE void philox_chunk(int isa, const uint64_t *ctr, int m, uint64_t key, uint32_t *w0, uint32_t *w1,
                            uint32_t *w2, uint32_t *w3) {
#if TI_X86
    if (isa == ISA_AVX512) { philox_avx512(ctr, m, key, w0, w1, w2, w3); return; }
    if (isa == ISA_AVX2) { philox_avx2(ctr, m, key, w0, w1, w2, w3); return; }
#endif
    (void)isa;
    philox_generic(ctr, m, key, w0, w1, w2, w3);
}

/* Triton's uint_to_uniform_float: [0, 1) in fp32 */
TI_INLINE float to_uniform(uint32_t w) {
    int32_t x = (int32_t)w;
    x = x < 0 ? ~x : x;
    return (float)x * F32(4.6566127342e-10);
}

/* ---- fp32 log, sin, cos through double ---- */

/* log(x) for a positive normal fp32 x, rounded to fp32: x = 2^e m with m in (sqrt(1/2), sqrt(2)],
 * log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716, by its series to s^15 (truncation below
 * 2e-12 relative). */
TI_INLINE float log_f32(float x) {
    uint32_t bits = f2u(x);
    int32_t e = (int32_t)(bits >> 23) - 127;
    uint32_t mb = (bits & 0x007FFFFFu) | 0x3F800000u;
    int big = mb > 0x3FB504F3u; /* m > sqrt(2) */
    mb = big ? mb - 0x00800000u : mb; /* halve m (exact) */
    e = big ? e + 1 : e;
    double m = (double)u2f(mb);
    double s = (m - 1.0) / (m + 1.0);
    double s2 = s * s;
    double p = 1.0 / 15.0;
    p = p * s2 + 1.0 / 13.0;
    p = p * s2 + 1.0 / 11.0;
    p = p * s2 + 1.0 / 9.0;
    p = p * s2 + 1.0 / 7.0;
    p = p * s2 + 1.0 / 5.0;
    p = p * s2 + 1.0 / 3.0;
    p = p * s2 + 1.0;
    double lm = 2.0 * s * p;
    return (float)((double)e * 0.6931471805599453 + lm);
}

/* log(x) in fp32 arithmetic, within 0.96 ulp (measured; log_f32 is within 0.5), for a positive normal fp32 x:
 * x = 2^e (1 + f) with 1 + f in (sqrt(1/2), sqrt(2)], s = f / (2 + f), log(1 + f) = 2 atanh(s) = f - s (f - R),
 * R = 2 s^2 / 3 + 2 s^4 / 5 + ... to s^8 (the exact f carries the value; the rounded correction is at most
 * a fifth of it), plus e ln 2 in two parts (e * hi exact). Box-Muller's radius halves its error (sqrt). */
TI_INLINE float log_f32_fast(float x) {
    uint32_t bits = f2u(x);
    int32_t e = (int32_t)(bits >> 23) - 127;
    uint32_t mb = (bits & 0x007FFFFFu) | 0x3F800000u;
    int big = mb > 0x3FB504F3u;
    mb = big ? mb - 0x00800000u : mb;
    e = big ? e + 1 : e;
    float m = u2f(mb);
    float f = m - 1.0f;
    float s = f / (m + 1.0f);
    float z = s * s;
    float R = z * (F32(2.0 / 3.0) + z * (F32(2.0 / 5.0) + z * (F32(2.0 / 7.0) + z * F32(2.0 / 9.0))));
    float ef = (float)e;
    float hi = ef * 0.693145751953125f;          /* ln 2 to 16 bits */
    float lo = ef * F32(1.4286068202862268e-06); /* ln 2 - hi */
    return hi + (f - (s * (f - R) - lo));
}

/* cos(t) and sin(t) for fp32 t in [0, 8), rounded to fp32. t - k pi/2 by Cody-Waite with a 33-bit pi/2
 * (k pi/2_hi and the difference are exact), then Taylor series on [-pi/4, pi/4] to r^13 / r^14. */
TI_INLINE void sincos_f32(float tf, float *c_out, float *s_out) {
    const double PIO2_HI = 1.5707963267341256;  /* pi/2 rounded to a multiple of 2^-32 */
    const double PIO2_LO = 6.0771005065061922e-11; /* pi/2 - PIO2_HI */
    double t = (double)tf;
    int32_t k = (int32_t)(t * 0.6366197723675814 + 0.5);
    double kd = (double)k;
    double r = (t - kd * PIO2_HI) - kd * PIO2_LO;
    double r2 = r * r;
    double sp = 1.0 / 6227020800.0;
    sp = sp * r2 - 1.0 / 39916800.0;
    sp = sp * r2 + 1.0 / 362880.0;
    sp = sp * r2 - 1.0 / 5040.0;
    sp = sp * r2 + 1.0 / 120.0;
    sp = sp * r2 - 1.0 / 6.0;
    double sn = r + r * r2 * sp;
    double cp = 1.0 / 87178291200.0;
    cp = cp * r2 - 1.0 / 479001600.0;
    cp = cp * r2 + 1.0 / 3628800.0;
    cp = cp * r2 - 1.0 / 40320.0;
    cp = cp * r2 + 1.0 / 720.0;
    cp = cp * r2 - 1.0 / 24.0;
    cp = cp * r2 + 0.5;
    double cs = 1.0 - r2 * cp;
    int q = k & 3;
    double s_sel = (q & 1) ? cs : sn;
    double c_sel = (q & 1) ? sn : cs;
    s_sel = (q & 2) ? -s_sel : s_sel;
    c_sel = ((q + 1) & 2) ? -c_sel : c_sel;
    *c_out = (float)c_sel;
    *s_out = (float)s_sel;
}

#if defined(__GNUC__)
TI_INLINE float sqrt_f32(float x) { return __builtin_sqrtf(x); }
#else
#include <math.h>
TI_INLINE float sqrt_f32(float x) { return sqrtf(x); }
#endif

/* ---- transforms on a chunk, in place: uniform words -> values ---- */

TI_INLINE void uniform_pass(const uint32_t *w, float *v, int m, float s0, float s1) {
    for (int i = 0; i < m; i++) v[i] = to_uniform(w[i]) * s1 + s0;
}

/* Box-Muller on the word pair (wa, wb) -> values (va, vb) */
TI_INLINE void normal_pass(const uint32_t *wa, const uint32_t *wb, float *va, float *vb, int m, float s0,
                           float s1) {
    for (int i = 0; i < m; i++) {
        float u1 = maxf(to_uniform(wa[i]), F32(1.0e-7));
        float th = to_uniform(wb[i]) * F32(6.283185307179586);
        float r = sqrt_f32(log_f32_fast(u1) * -2.0f);
        float c, s;
        sincos_f32(th, &c, &s);
        va[i] = (r * c) * s1 + s0;
        vb[i] = (r * s) * s1 + s0;
    }
}

/* Giles' single-precision erfinv, each step rounded as in sampling.erfinv_giles */
TI_INLINE float erfinv_giles(float x, float w) {
    float ws = w - 2.5f;
    float p = F32(2.81022636e-08);
    p = p * ws + F32(3.43273939e-07);
    p = p * ws + F32(-3.5233877e-06);
    p = p * ws + F32(-4.39150654e-06);
    p = p * ws + F32(0.00021858087);
    p = p * ws + F32(-0.00125372503);
    p = p * ws + F32(-0.00417768164);
    p = p * ws + F32(0.246640727);
    p = p * ws + F32(1.50140941);
    float wb = sqrt_f32(w) - 3.0f;
    float q = F32(-0.000200214257);
    q = q * wb + F32(0.000100950558);
    q = q * wb + F32(0.00134934322);
    q = q * wb + F32(-0.00367342844);
    q = q * wb + F32(0.00573950773);
    q = q * wb + F32(-0.0076224613);
    q = q * wb + F32(0.00943887047);
    q = q * wb + F32(1.00167406);
    q = q * wb + F32(2.83297682);
    return (w < 5.0f ? p : q) * x;
}

TI_INLINE void trunc_pass(const uint32_t *w, float *v, int m, const params *P) {
    const float p_lo = P->p_lo, p_span = P->p_span, zlo = P->zlo, zhi = P->zhi;
    const float s0 = P->s0, s1 = P->s1, lo = P->lo_clip, hi = P->hi_clip;
    for (int i = 0; i < m; i++) {
        float p = to_uniform(w[i]) * p_span + p_lo;
        p = minf(maxf(p, F32(1.0e-30)), F32(0.99999994));
        float x = p * 2.0f - 1.0f;
        float wv = -log_f32((p * 4.0f) * (1.0f - p));
        float z = erfinv_giles(x, wv) * F32(1.4142135623730951);
        z = minf(maxf(z, zlo), zhi);
        v[i] = minf(maxf(z * s1 + s0, lo), hi);
    }
}

/* Draws for the counters ctr[0..m): v[k][i] is element 4 ctr[i] + k. */
TI_INLINE void values_chunk(int isa, const uint64_t *ctr, int m, uint64_t key, int kind, const params *P,
                            float v[4][CHUNK]) {
    uint32_t w[4][CHUNK];
    philox_chunk(isa, ctr, m, key, w[0], w[1], w[2], w[3]);
    if (kind == KIND_NORMAL) {
        normal_pass(w[0], w[1], v[0], v[1], m, P->s0, P->s1);
        normal_pass(w[2], w[3], v[2], v[3], m, P->s0, P->s1);
    } else if (kind == KIND_TRUNC) {
        for (int k = 0; k < 4; k++) trunc_pass(w[k], v[k], m, P);
    } else {
        for (int k = 0; k < 4; k++) uniform_pass(w[k], v[k], m, P->s0, P->s1);
    }
}

/* ---- fp32 -> output dtype ---- */

TI_INLINE uint16_t to_bf16(float f) {
    uint32_t x = f2u(f);
    uint32_t r = (x + 0x7FFFu + ((x >> 16) & 1u)) >> 16;
    return (uint16_t)(((x & 0x7FFFFFFFu) > 0x7F800000u) ? 0x7FC0u : r);
}

TI_INLINE uint16_t to_f16(float f) {
    uint32_t x = f2u(f);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t ax = x & 0x7FFFFFFFu;
    /* normal halves: rebias the exponent, round the 13 dropped bits to nearest even */
    uint32_t nb = ax - 0x38000000u;
    uint32_t normal = (nb + 0xFFFu + ((nb >> 13) & 1u)) >> 13;
    /* subnormal halves (|f| < 2^-14): adding 0.5 (ulp 2^-24) rounds |f| to a multiple of 2^-24 */
    uint32_t sub = f2u(u2f(ax) + 0.5f) - 0x3F000000u;
    uint32_t h = ax < 0x38800000u ? sub : normal;
    h = ax >= 0x477FF000u ? 0x7C00u : h;   /* |f| >= 65520 rounds to infinity */
    h = ax > 0x7F800000u ? 0x7E00u : h;    /* NaN */
    return (uint16_t)(h | sign);
}

/* Write src[0..n) (fp32) to dst + offset elements, converted to the output dtype. */
TI_INLINE void store(void *dst, int64_t offset, const float *src, int64_t n, int dtype) {
    if (dtype == OUT_F32) {
        memcpy((float *)dst + offset, src, (size_t)n * sizeof(float));
    } else if (dtype == OUT_F64) {
        double *d = (double *)dst + offset;
        for (int64_t i = 0; i < n; i++) d[i] = (double)src[i];
    } else if (dtype == OUT_BF16) {
        uint16_t *d = (uint16_t *)dst + offset;
        for (int64_t i = 0; i < n; i++) d[i] = to_bf16(src[i]);
    } else {
        uint16_t *d = (uint16_t *)dst + offset;
        for (int64_t i = 0; i < n; i++) d[i] = to_f16(src[i]);
    }
}

TI_INLINE void unpack_params(const float *prm, params *P) {
    P->s0 = prm[0]; P->s1 = prm[1]; P->p_lo = prm[2]; P->p_span = prm[3];
    P->zlo = prm[4]; P->zhi = prm[5]; P->lo_clip = prm[6]; P->hi_clip = prm[7];
}

/* ---- the work, compiled once per instruction set ---- */

TI_INLINE int fill_impl(int isa, void *out, int dtype, int64_t start, int64_t n, uint64_t key, int kind,
                        const float *prm) {
    params P;
    unpack_params(prm, &P);
    uint64_t ctr[CHUNK];
    float v[4][CHUNK];
    float inter[4 * CHUNK];
    int64_t end = start + n; /* one past the last element */
    for (int64_t c = start >> 2; 4 * c < end; c += CHUNK) {
        int64_t left = ((end + 3) >> 2) - c;
        int m = left < CHUNK ? (int)left : CHUNK;
        for (int i = 0; i < m; i++) ctr[i] = (uint64_t)(c + i);
        values_chunk(isa, ctr, m, key, kind, &P, v);
        for (int i = 0; i < m; i++) {
            inter[4 * i] = v[0][i];
            inter[4 * i + 1] = v[1][i];
            inter[4 * i + 2] = v[2][i];
            inter[4 * i + 3] = v[3][i];
        }
        int64_t e0 = 4 * c > start ? 4 * c : start;
        int64_t e1 = 4 * (c + m) < end ? 4 * (c + m) : end;
        store(out, e0 - start, inter + (e0 - 4 * c), e1 - e0, dtype);
    }
    return 0;
}

TI_INLINE int fill_index_impl(int isa, void *out, int dtype, const int64_t *index, int64_t n, uint64_t key,
                              int kind, const float *prm) {
    params P;
    unpack_params(prm, &P);
    uint64_t ctr[CHUNK];
    float v[4][CHUNK];
    float pick[CHUNK];
    for (int64_t s = 0; s < n; s += CHUNK) {
        int m = n - s < CHUNK ? (int)(n - s) : CHUNK;
        for (int i = 0; i < m; i++) ctr[i] = (uint64_t)index[s + i] >> 2;
        values_chunk(isa, ctr, m, key, kind, &P, v);
        for (int i = 0; i < m; i++) pick[i] = v[index[s + i] & 3][i];
        store(out, s, pick, m, dtype);
    }
    return 0;
}

typedef int (*fill_fn)(void *, int, int64_t, int64_t, uint64_t, int, const float *);
typedef int (*fill_index_fn)(void *, int, const int64_t *, int64_t, uint64_t, int, const float *);

static int fill_generic(void *out, int dtype, int64_t start, int64_t n, uint64_t key, int kind, const float *prm) {
    return fill_impl(ISA_GENERIC, out, dtype, start, n, key, kind, prm);
}
static int fill_index_generic(void *out, int dtype, const int64_t *index, int64_t n, uint64_t key, int kind,
                              const float *prm) {
    return fill_index_impl(ISA_GENERIC, out, dtype, index, n, key, kind, prm);
}
#if TI_X86
__attribute__((target("avx2"))) static int fill_avx2(void *out, int dtype, int64_t start, int64_t n, uint64_t key,
                                                      int kind, const float *prm) {
    return fill_impl(ISA_AVX2, out, dtype, start, n, key, kind, prm);
}
__attribute__((target("avx2"))) static int fill_index_avx2(void *out, int dtype, const int64_t *index, int64_t n,
                                                            uint64_t key, int kind, const float *prm) {
    return fill_index_impl(ISA_AVX2, out, dtype, index, n, key, kind, prm);
}
__attribute__((target("avx512f"))) static int fill_avx512(void *out, int dtype, int64_t start, int64_t n,
                                                           uint64_t key, int kind, const float *prm) {
    return fill_impl(ISA_AVX512, out, dtype, start, n, key, kind, prm);
}
__attribute__((target("avx512f"))) static int fill_index_avx512(void *out, int dtype, const int64_t *index,
                                                                 int64_t n, uint64_t key, int kind,
                                                                 const float *prm) {
    return fill_index_impl(ISA_AVX512, out, dtype, index, n, key, kind, prm);
}
#endif

/* ---- instruction-set selection ---- */

static int best_isa(void) {
#if TI_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return ISA_AVX512;
    if (__builtin_cpu_supports("avx2")) return ISA_AVX2;
#endif
    return ISA_GENERIC;
}

static int active_isa = -1;

/* The instruction set in use (0 portable C, 1 AVX2, 2 AVX-512F). */
TI_EXPORT int ti_get_isa(void) {
    if (active_isa < 0) active_isa = best_isa();
    return active_isa;
}

/* Use instruction set `isa` (at most what the CPU has; -1: the best it has). Returns the one now in use. */
TI_EXPORT int ti_set_isa(int isa) {
    int best = best_isa();
    active_isa = (isa < 0 || isa > best) ? best : isa;
    return active_isa;
}

/* ---- entry points ---- */

/* Elements start .. start + n - 1 of the distribution `kind` under `key`, written to out[0..n) of dtype
 * `dtype` (OUT_*). prm: the 8 fp32 scalars of `params`. Returns 0, or -1 for invalid arguments. */
TI_EXPORT int ti_philox_fill(void *out, int dtype, int64_t start, int64_t n, uint64_t key, int kind,
                             const float *prm) {
    if (kind < 0 || kind > 2 || dtype < 0 || dtype > 3 || start < 0 || n < 0 || start > INT64_MAX - n - 4)
        return -1;
    fill_fn f = fill_generic;
#if TI_X86
    int isa = ti_get_isa();
    f = isa == ISA_AVX512 ? fill_avx512 : isa == ISA_AVX2 ? fill_avx2 : fill_generic;
#endif
    return f(out, dtype, start, n, key, kind, prm);
}

/* Elements index[0..n) (each >= 0) of the distribution under `key`, written to out[0..n). */
TI_EXPORT int ti_philox_fill_index(void *out, int dtype, const int64_t *index, int64_t n, uint64_t key, int kind,
                                   const float *prm) {
    if (kind < 0 || kind > 2 || dtype < 0 || dtype > 3 || n < 0) return -1;
    for (int64_t j = 0; j < n; j++)
        if (index[j] < 0) return -1;
    fill_index_fn f = fill_index_generic;
#if TI_X86
    int isa = ti_get_isa();
    f = isa == ISA_AVX512 ? fill_index_avx512 : isa == ISA_AVX2 ? fill_index_avx2 : fill_index_generic;
#endif
    return f(out, dtype, index, n, key, kind, prm);
}

/* The four Philox-4x32-10 words of counters c_first .. c_first + m - 1: out[4 i + k] is word k. */
TI_EXPORT int ti_philox_words(uint32_t *out, uint64_t c_first, int64_t m, uint64_t key) {
    if (m < 0) return -1;
    int isa = ti_get_isa();
    uint64_t ctr[CHUNK];
    uint32_t w[4][CHUNK];
    for (int64_t s = 0; s < m; s += CHUNK) {
        int mm = m - s < CHUNK ? (int)(m - s) : CHUNK;
        for (int i = 0; i < mm; i++) ctr[i] = c_first + (uint64_t)(s + i);
        philox_chunk(isa, ctr, mm, key, w[0], w[1], w[2], w[3]);
        for (int i = 0; i < mm; i++)
            for (int k = 0; k < 4; k++) out[4 * (s + i) + k] = w[k][i];
    }
    return 0;
}

/* src[0..n) fp32 converted to dtype into dst (the kernel's own rounding, for tests). */
TI_EXPORT int ti_convert_f32(void *dst, const float *src, int64_t n, int dtype) {
    if (dtype < 0 || dtype > 3 || n < 0) return -1;
    store(dst, 0, src, n, dtype);
    return 0;
}

/* The kernel's fp32 logs (log_f32, log_f32_fast; positive normal x), cos and sin (x in [0, 8)) of x[0..n), for tests. */
TI_EXPORT int ti_math_f32(const float *x, int64_t n, float *log_out, float *logf_out, float *cos_out,
                          float *sin_out) {
    if (n < 0) return -1;
    for (int64_t i = 0; i < n; i++) {
        log_out[i] = x[i] > 0.0f ? log_f32(x[i]) : 0.0f;
        logf_out[i] = x[i] > 0.0f ? log_f32_fast(x[i]) : 0.0f;
        sincos_f32(x[i], cos_out + i, sin_out + i);
    }
    return 0;
}

/* The version of the kernel's interface (native.py checks it). */
TI_EXPORT int ti_philox_abi(void) { return 1; }
