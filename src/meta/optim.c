/* Outer optimizers on flat float arrays: SGD with momentum, Adam, AdamW;
 * global-norm clipping. Follows the usual definitions (Kingma & Ba 2015 for
 * Adam, Loshchilov & Hutter 2019 for AdamW's decoupled decay). */
#include "meta/meta_internal.h"

#include <math.h>
#include <stdint.h>

/* The per-element rules below are shared by the update and its dry run, so
 * both compute bit-identical values. */
typedef struct {
    float lr, mu, wd, b1, b2, c1, c2, eps;
    int adam, decoupled;
} rule;

static rule make_rule(const mp__opt *o, int64_t t)
{
    rule r = {(float)o->lr, (float)o->momentum, (float)o->weight_decay, (float)o->beta1, (float)o->beta2,
              1.0f, 1.0f, (float)o->eps, o->kind != MP_OPT_SGD, o->kind == MP_OPT_ADAMW};
    if (r.adam) { /* bias corrections, computed in double once */
        r.c1 = (float)(1.0 / (1.0 - pow(o->beta1, (double)t)));
        r.c2 = (float)(1.0 / (1.0 - pow(o->beta2, (double)t)));
    }
    return r;
}

/* SGD: v = mu v + (g + wd p); p -= lr v (with v starting at 0 the first step
 * is plain SGD). */
static inline void sgd_elem(const rule *r, float g, float *p, float *vel)
{
    float gi = g + r->wd * *p;
    *vel = r->mu * *vel + gi;
    *p -= r->lr * *vel;
}

/* Adam (L2 decay folded into g) or AdamW (decoupled: p -= lr wd p first):
 * m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; p -= lr (m c1) / (sqrt(v c2) + eps). */
static inline void adam_elem(const rule *r, float g, float *p, float *m, float *v)
{
    if (r->decoupled)
        *p -= r->lr * r->wd * *p;
    else
        g += r->wd * *p;
    *m = r->b1 * *m + (1.0f - r->b1) * g;
    *v = r->b2 * *v + (1.0f - r->b2) * g * g;
    *p -= r->lr * (*m * r->c1) / (sqrtf(*v * r->c2) + r->eps);
}

void mp__opt_update(const mp__opt *o, int64_t t, float *p, const float *g, float *m, float *v,
                    size_t n)
{
    const rule r = make_rule(o, t);
    if (r.adam)
        for (size_t i = 0; i < n; i++) adam_elem(&r, g[i], &p[i], &m[i], &v[i]);
    else
        for (size_t i = 0; i < n; i++) sgd_elem(&r, g[i], &p[i], &m[i]);
}

size_t mp__opt_first_non_finite(const mp__opt *o, int64_t t, const float *p, const float *g, float gscale,
                                const float *m, const float *v, size_t n)
{
    const rule r = make_rule(o, t);
    for (size_t i = 0; i < n; i++) {
        float pi = p[i], mi = m[i], vi = 0.0f;
        if (r.adam) {
            vi = v[i];
            adam_elem(&r, g[i] * gscale, &pi, &mi, &vi);
        } else {
            sgd_elem(&r, g[i] * gscale, &pi, &mi);
        }
        if (!isfinite(pi) || !isfinite(mi) || !isfinite(vi)) return i;
    }
    return SIZE_MAX;
}

double mp__sum_squares(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += (double)g[i] * (double)g[i];
    return s;
}

double mp__clip_factor(double norm, double clip)
{
    if (clip <= 0.0 || norm <= clip) return 1.0;
    return clip / norm;
}

/* ---- statistics --------------------------------------------------------------- */
void mp__running_add(mp__running *r, double x)
{
    r->n++;
    double d = x - r->mean;
    r->mean += d / (double)r->n;
    r->m2 += d * (x - r->mean);
}

void mp__running_ci95(const mp__running *r, double *mean, double *ci95)
{
    *mean = r->n ? r->mean : NAN;
    if (r->n < 2) {
        *ci95 = NAN;
        return;
    }
    double var = r->m2 / (double)(r->n - 1);
    *ci95 = 1.96 * sqrt(var > 0 ? var : 0) / sqrt((double)r->n);
}
