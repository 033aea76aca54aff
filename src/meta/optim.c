/* Outer optimizers on flat float arrays: SGD with momentum, Adam, AdamW;
 * global-norm clipping. Follows the usual definitions (Kingma & Ba 2015 for
 * Adam, Loshchilov & Hutter 2019 for AdamW's decoupled decay). */
#include "meta/meta_internal.h"

#include <math.h>

/* v = mu v + (g + wd p); p -= lr v. With v starting at 0 the first step is
 * plain SGD. */
static void sgd_update(const mp__opt *o, float *p, const float *g, float *vel, size_t n)
{
    const float lr = (float)o->lr, mu = (float)o->momentum, wd = (float)o->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        vel[i] = mu * vel[i] + gi;
        p[i] -= lr * vel[i];
    }
}

/* Adam (decoupled = 0: L2 decay folded into g) or AdamW (decoupled = 1:
 * p -= lr wd p first). Bias corrections are computed in double once. */
static void adam_update(const mp__opt *o, int64_t t, int decoupled, float *p, const float *g,
                        float *m, float *v, size_t n)
{
    const float b1 = (float)o->beta1, b2 = (float)o->beta2;
    const float c1 = (float)(1.0 / (1.0 - pow(o->beta1, (double)t)));
    const float c2 = (float)(1.0 / (1.0 - pow(o->beta2, (double)t)));
    const float lr = (float)o->lr, eps = (float)o->eps, wd = (float)o->weight_decay;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        if (decoupled)
            p[i] -= lr * wd * p[i];
        else
            gi += wd * p[i];
        m[i] = b1 * m[i] + (1.0f - b1) * gi;
        v[i] = b2 * v[i] + (1.0f - b2) * gi * gi;
        p[i] -= lr * (m[i] * c1) / (sqrtf(v[i] * c2) + eps);
    }
}

void mp__opt_update(const mp__opt *o, int64_t t, float *p, const float *g, float *m, float *v,
                    size_t n)
{
    if (o->kind == MP_OPT_SGD)
        sgd_update(o, p, g, m, n);
    else
        adam_update(o, t, o->kind == MP_OPT_ADAMW, p, g, m, v, n);
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
