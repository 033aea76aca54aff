/* Counter-based random streams: splitmix64 seeding of xoshiro256**. */
#include "core/internal.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void mp__rng_seed(mp__rng *r, uint64_t seed, uint64_t stream)
{
    /* Mix the stream through its own splitmix step so that nearby (seed,
     * stream) pairs give unrelated states. */
    uint64_t x = seed;
    uint64_t y = stream ^ 0x6a09e667f3bcc909ULL;
    uint64_t k = splitmix64(&x) ^ splitmix64(&y);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&k);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mp__rng_next(mp__rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double mp__rng_uniform(mp__rng *r) { return (double)(mp__rng_next(r) >> 11) * 0x1.0p-53; }

double mp__rng_normal(mp__rng *r)
{
    /* Box-Muller; one value per call keeps the stream position simple. */
    double u1 = 1.0 - mp__rng_uniform(r); /* (0, 1] */
    double u2 = mp__rng_uniform(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t mp__rng_below(mp__rng *r, uint64_t n)
{
    if (n <= 1) return 0;
    /* Rejection sampling: no modulo bias. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = mp__rng_next(r); while (x >= limit);
    return x % n;
}

void mp__rng_shuffle_i32(mp__rng *r, int32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mp__rng_below(r, i);
        int32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
