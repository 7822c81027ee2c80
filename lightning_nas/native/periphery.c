/* Element-wise analog periphery kernels for CPU (float32, contiguous), called via ctypes
 * from lightning_nas/periphery/native.py. They compute exactly what the eager PyTorch chains
 * in lightning_nas/periphery/eager.py compute, in one pass over memory:
 *
 *   lnas_dac: y = clamp(x, -|r|, |r|) / r; quantise to `step` (step > 0); clip to +-inp_bound;
 *        optionally the number of unfolded elements at or beyond the range (pixel i counts
 *        counts[i % period] times). No mask: lnas_dac_backward recomputes it.
 *   lnas_dac_backward: grad_x = passed ? g / r : 0, and sum(passed ? g * x : 0), the mask
 *        recomputed from x (nothing stored between forward and backward).
 *   lnas_adc: q = y + std * N(0, 1); quantise to `step` (step > 0); clip to +-bound;
 *        out = q times a per-channel scale (optional; q itself can be kept for the backward);
 *        passed = not clipped, one bit per element (bit i % 8 of byte i / 8); out may be y.
 *   lnas_adc_backward: grad_y = passed ? g * scale[c] : 0 and grad_scale[c] = sum g * q, q kept
 *        or recovered as out / scale[c].
 *   lnas_weighted_moments: sums of x and x^2, pixel i counted counts[i % period] times.
 *
 * `lim` is the clip limit in quantisation steps (bound / step, or bound without quantisation),
 * computed by the caller in double precision exactly as the eager reference rounds it.
 * Tensors are NCHW-contiguous; `plane` = H*W, `channels` = C (1 and numel/N for a scalar scale).
 *
 * Gaussian noise: counter-based (splitmix64 of seed + pair index, Box-Muller with
 * float32 polynomial log/sin/cos, relative error < 1e-6). Element i's noise depends only
 * on (seed, i), so results do not depend on the number of threads. The seed comes from
 * torch's default generator (torch.manual_seed makes runs reproducible).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define BLK 2048 /* elements per noise block; thread chunks are multiples of it */

static inline uint64_t splitmix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* ln(x), x in (0, 1]: x = m 2^e, m in [sqrt(.5), sqrt(2)), ln m = 2 atanh((m-1)/(m+1)). */
static inline float log_unit(float x) {
    uint32_t b;
    memcpy(&b, &x, 4);
    int32_t e = (int32_t)((b >> 23) & 0xff) - 127;
    uint32_t mb = (b & 0x7fffff) | 0x3f800000;
    float m;
    memcpy(&m, &mb, 4);
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e += big;
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float p = 2.0f * s * (1.0f + s2 * (0.33333333f + s2 * (0.2f + s2 * (0.14285715f + s2 * 0.11111111f))));
    return p + (float)e * 0.69314718f;
}

/* sin and cos of 2 pi u, u in [0, 1): quadrant + Taylor polynomials on [-pi/4, pi/4]. */
static inline void sincos_turn(float u, float *s, float *c) {
    float v = u * 4.0f, qf = nearbyintf(v), f = (v - qf) * 1.57079633f, f2 = f * f;
    int q = ((int)qf) & 3;
    float sn = f * (1.0f + f2 * (-1.6666667e-1f + f2 * (8.3333333e-3f + f2 * (-1.9841270e-4f + f2 * 2.7557319e-6f))));
    float cs = 1.0f + f2 * (-0.5f + f2 * (4.1666667e-2f + f2 * (-1.3888889e-3f + f2 * (2.4801587e-5f - f2 * 2.7557319e-7f))));
    *s = q == 0 ? sn : q == 1 ? cs : q == 2 ? -sn : -cs;
    *c = q == 0 ? cs : q == 1 ? -sn : q == 2 ? -cs : sn;
}

/* z[0..BLK): standard normals for the block starting at element `start` (a multiple of BLK). */
static void gauss_block(float *z, int64_t start, uint64_t seed) {
    const uint64_t base = (uint64_t)(start / 2);
#pragma omp simd
    for (int j = 0; j < BLK / 2; j++) {
        uint64_t h = splitmix(seed + (base + (uint64_t)j) * 0x9E3779B97F4A7C15ull);
        float u1 = ((float)(uint32_t)(h >> 32) + 0.5f) * 2.3283064e-10f; /* (0, 1] */
        float u2 = (float)(uint32_t)(h & 0xFFFFFF) * 5.9604645e-8f;        /* [0, 1) */
        float rad = sqrtf(-2.0f * log_unit(u1)), s, c;
        sincos_turn(u2, &s, &c);
        z[j] = rad * c;
        z[j + BLK / 2] = rad * s;
    }
}

typedef struct {
    const float *x;
    float *out, *unscaled;
    uint8_t *passed;
    float a, step, lim, bound; /* dac: a = r, bound = inp_bound; adc: a = noise std, lim */
    uint64_t seed;
    const float *scale;
    const double *counts;
    int64_t channels, plane, period;
} job_t;

/* torch.clamp: NaN stays NaN (fminf/fmaxf would need -ffinite-math-only to vectorize). */
static inline float clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

/* Elements [lo, hi); returns the weighted count of inputs at or beyond the range (if counts). */
static double dac_range(const job_t *j, int64_t lo, int64_t hi) {
    const float r = j->a, b = fabsf(j->a), step = j->step, ib = j->bound;
    const float *restrict x = j->x + lo;
    float *restrict o = j->out + lo;
    const int64_t n = hi - lo;
    double outside = 0.0;
    if (step > 0) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = nearbyintf(clampf(x[i], -b, b) / r / step) * step;
    } else {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = clampf(x[i], -b, b) / r;
    }
    if (ib < 1.0f) {
#pragma omp simd
        for (int64_t i = 0; i < n; i++) o[i] = clampf(o[i], -ib, ib);
    }
    if (j->counts) {
        for (int64_t i = lo; i < hi;) {
            const int64_t at = i % j->period, run = j->period - at < hi - i ? j->period - at : hi - i;
            const double *restrict w = j->counts + at;
            const float *restrict xx = j->x + i;
#pragma omp simd reduction(+ : outside)
            for (int64_t k = 0; k < run; k++) outside += fabsf(xx[k]) >= b ? w[k] : 0.0;
            i += run;
        }
    }
    return outside;
}

static void adc_range(const job_t *j, int64_t lo, int64_t hi) {
    float z[BLK];
    const float sd = j->a, step = j->step, lim = j->lim;
    for (int64_t b = lo; b < hi; b += BLK) {
        int64_t e = b + BLK < hi ? b + BLK : hi;
        int n = (int)(e - b);
        if (sd > 0) gauss_block(z, b, j->seed);
        else memset(z, 0, sizeof(float) * (size_t)n);
        const float *y = j->x + b; /* out may be y (in place) */
        float *o = j->out + b;
        if (step > 0) {
#pragma omp simd
            for (int i = 0; i < n; i++) o[i] = nearbyintf((y[i] + z[i] * sd) / step);
        } else {
#pragma omp simd
            for (int i = 0; i < n; i++) o[i] = y[i] + z[i] * sd;
        }
        if (j->passed) { /* one bit per element (b is a multiple of 8) */
            uint8_t *restrict p = j->passed + b / 8;
            for (int i = 0; i < n; i += 8) {
                uint8_t byte = 0;
                for (int k = 0; k < 8 && i + k < n; k++) byte |= (uint8_t)(fabsf(o[i + k]) < lim) << k;
                p[i / 8] = byte;
            }
        }
        const float unit = step > 0 ? step : 1.0f;
#pragma omp simd
        for (int i = 0; i < n; i++) o[i] = clampf(o[i], -lim, lim) * unit;
        if (j->unscaled) memcpy(j->unscaled + b, o, sizeof(float) * (size_t)n);
        if (j->scale) { /* runs of `plane` elements share a channel */
            for (int64_t i = b; i < e;) {
                const int64_t run = j->plane - i % j->plane < e - i ? j->plane - i % j->plane : e - i;
                const float s = j->scale[(i / j->plane) % j->channels];
                float *restrict oo = j->out + i;
#pragma omp simd
                for (int64_t k = 0; k < run; k++) oo[k] *= s;
                i += run;
            }
        }
    }
}

/* Chunks of CHUNK blocks go to OpenMP threads. The library links libgomp.so.1, which after
 * `import torch` is the runtime torch already loaded: the same warm thread pool, no second
 * set of threads competing for the cores. Chunk borders are multiples of BLK, so the noise
 * does not depend on the number of threads. */
#define CHUNK ((int64_t)BLK * 16)

double lnas_dac(const float *x, float *out, int64_t n, float r, float step, float inp_bound, const double *counts,
                int64_t period, int threads) {
    job_t j = {x, out, NULL, NULL, r, step, 0.0f, inp_bound, 0, NULL, counts, 1, 1, period};
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
    double outside = 0.0;
#pragma omp parallel for schedule(static) num_threads(threads < 1 ? 1 : threads) if (chunks > 1) \
    reduction(+ : outside)
    for (int64_t c = 0; c < chunks; c++) outside += dac_range(&j, c * CHUNK, c * CHUNK + CHUNK < n ? c * CHUNK + CHUNK : n);
    return outside;
}

/* grad_x = passed ? g / r : 0 with the DAC's clip mask recomputed from x (as in lnas_dac);
 * returns sum(passed ? g * x : 0). */
double lnas_dac_backward(const float *g, const float *x, float *grad_x, int64_t n, float r, float step, float lim,
                         int threads) {
    const float b = fabsf(r), div = step > 0 ? step : 1.0f;
    double acc = 0.0;
    if (step > 0) {
#pragma omp parallel for simd schedule(static) num_threads(threads < 1 ? 1 : threads) if (n > CHUNK) \
    reduction(+ : acc)
        for (int64_t i = 0; i < n; i++) {
            const int pass = fabsf(nearbyintf(clampf(x[i], -b, b) / r / div)) < lim;
            const float gm = pass ? g[i] : 0.0f;
            acc += (double)(gm * x[i]);
            grad_x[i] = gm / r;
        }
    } else {
#pragma omp parallel for simd schedule(static) num_threads(threads < 1 ? 1 : threads) if (n > CHUNK) \
    reduction(+ : acc)
        for (int64_t i = 0; i < n; i++) {
            const int pass = fabsf(clampf(x[i], -b, b) / r) < lim;
            const float gm = pass ? g[i] : 0.0f;
            acc += (double)(gm * x[i]);
            grad_x[i] = gm / r;
        }
    }
    return acc;
}

void lnas_adc(const float *y, float *out, float *unscaled, uint8_t *passed, int64_t n, float noise_std, float step,
              float lim, uint64_t seed, const float *scale, int64_t channels, int64_t plane, int threads) {
    job_t j = {y, out, unscaled, passed, noise_std, step, lim, lim, seed, scale, NULL, channels, plane, 1};
    const int64_t chunks = (n + CHUNK - 1) / CHUNK;
#pragma omp parallel for schedule(static) num_threads(threads < 1 ? 1 : threads) if (chunks > 1)
    for (int64_t c = 0; c < chunks; c++) adc_range(&j, c * CHUNK, c * CHUNK + CHUNK < n ? c * CHUNK + CHUNK : n);
}

/* grad_y = passed ? g * scale[c] : 0 and grad_scale[c] = sum g * q over n / plane planes, with
 * q the ADC output before the scale: `unscaled` if given, else out / scale[c] (no scale is 0);
 * with neither, grad_scale stays 0. */
void lnas_adc_backward(const float *g, const uint8_t *passed, const float *unscaled, const float *out,
                       const float *scale, float *grad_y, double *grad_scale, int64_t n, int64_t channels,
                       int64_t plane, int threads) {
    const int64_t planes = n / plane;
    for (int64_t c = 0; c < channels; c++) grad_scale[c] = 0.0;
#pragma omp parallel for schedule(static) num_threads(threads < 1 ? 1 : threads) if (n > CHUNK) \
    reduction(+ : grad_scale[:channels])
    for (int64_t p = 0; p < planes; p++) {
        const int64_t c = p % channels, base = p * plane;
        const float s = scale[c];
        const float *restrict gg = g + base;
        float *restrict gy = grad_y + base;
        double acc = 0.0;
        if (unscaled) {
            const float *restrict qq = unscaled + base;
#pragma omp simd reduction(+ : acc)
            for (int64_t i = 0; i < plane; i++) acc += (double)(gg[i] * qq[i]);
        } else if (out) {
            const float *restrict oo = out + base;
#pragma omp simd reduction(+ : acc)
            for (int64_t i = 0; i < plane; i++) acc += (double)(gg[i] * oo[i]);
            acc /= s;
        }
        for (int64_t i = 0; i < plane; i++) {
            const int64_t e = base + i;
            gy[i] = (passed[e >> 3] >> (e & 7)) & 1 ? gg[i] * s : 0.0f;
        }
        grad_scale[c] += acc;
    }
}

/* s[0] = sum_i w_i x_i, s[1] = sum_i w_i x_i^2 with w_i = counts[i % period] (float64). */
void lnas_weighted_moments(const float *x, const double *counts, int64_t n, int64_t period, double *s,
                           int threads) {
    const int64_t samples = n / period;
    double s1 = 0.0, s2 = 0.0;
#pragma omp parallel for schedule(static) num_threads(threads < 1 ? 1 : threads) if (n > CHUNK) \
    reduction(+ : s1, s2)
    for (int64_t k = 0; k < samples; k++) {
        const float *restrict xx = x + k * period;
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t i = 0; i < period; i++) {
            const double v = xx[i];
            s1 += counts[i] * v;
            s2 += counts[i] * v * v;
        }
    }
    s[0] = s1;
    s[1] = s2;
}
