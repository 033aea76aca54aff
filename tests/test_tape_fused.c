/* Tape fast paths added for the second-order meta-step (docs/META.md,
 * performance): closed-form gelu derivatives of orders 2 and 3. Kept apart
 * from test_tape.c so that the two files can change independently. */
#include "test_util.h"

#include <stdlib.h>

/* gelu^(k)(x) in double from the closed forms, phi the normal density:
 * k = 1: Phi + x phi, 2: phi (2 - x^2), 3: phi x (x^2 - 4), 4: phi (-x^4 + 7x^2 - 4). */
static double gelu_deriv_ref(double x, int k)
{
    double phi = exp(-0.5 * x * x) * 0.39894228040143267794, x2 = x * x;
    switch (k) {
    case 1: return 0.5 * erfc(-x / sqrt(2.0)) + x * phi;
    case 2: return phi * (2.0 - x2);
    case 3: return phi * x * (x2 - 4.0);
    default: return phi * (-x2 * x2 + 7.0 * x2 - 4.0);
    }
}

/* Differentiating sum(gelu^(k)(x)) with create_graph gives gelu^(k+1)(x)
 * element-wise, computed by the tape's order-(k+1) gelu node. Orders 2 and
 * 3 use the vectorized closed forms, order 4 the general Hermite path. */
START_TEST(gelu_higher_derivatives_match_closed_forms)
{
    enum { N = 41 };
    float x[N];
    for (int i = 0; i < N - 3; i++) x[i] = -6.0f + 12.0f * (float)i / (float)(N - 4);
    x[N - 3] = 0.0f, x[N - 2] = 14.0f, x[N - 1] = -30.0f; /* the density underflows at the ends */
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var xv, cur, s;
    MP_CK_OK(mp_tape_leaf(t, 1, N, x, N, MP_LEAF_REQUIRES_GRAD, &xv));
    MP_CK_OK(mp_gelu(t, xv, &cur));
    for (int k = 1; k <= 4; k++) {
        MP_CK_OK(mp_sum(t, cur, MP_REDUCE_ALL, &s));
        MP_CK_OK(mp_tape_backward(t, s, 1));
        MP_CK_OK(mp_tape_grad(t, xv, &cur));
        float got[N];
        MP_CK_OK(mp_tape_read(t, cur, got, N));
        for (int i = 0; i < N; i++) {
            double want = gelu_deriv_ref(x[i], k);
            ck_assert_msg(fabs(got[i] - want) <= 2e-6 * (1.0 + fabs(want)),
                          "gelu order %d at x = %g: tape %.9g, closed form %.9g", k, (double)x[i],
                          (double)got[i], want);
        }
    }
    mp_tape_destroy(t);
}
END_TEST

Suite *mp_test_tape_fused_suite(void)
{
    Suite *s = suite_create("tape_fused");
    TCase *g = tcase_create("gelu");
    tcase_add_test(g, gelu_higher_derivatives_match_closed_forms);
    suite_add_tcase(s, g);
    return s;
}
