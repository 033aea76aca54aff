/* Tape fast paths added for the second-order meta-step (docs/META.md,
 * performance): closed-form gelu derivatives of orders 2 and 3. Kept apart
 * from test_tape.c so that the two files can change independently. */
#include "test_util.h"

#include "core/internal.h"

#include <stdlib.h>
#include <string.h>

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

/* mp__heads_matmul's bad inputs: a clear status, nothing recorded. (Its
 * values and derivatives are checked with the other ops in test_tape.c:
 * cases heads_qk, heads_pv, heads_tn and heads_attention.) */
START_TEST(heads_matmul_rejects_bad_inputs)
{
    static const float x[24] = {0};
    static const int32_t qk[3] = {1, 1, 0}, bad_flag[3] = {2, 1, 0}, neg_flag[3] = {-1, 1, 0};
    mp_tape *t;
    MP_CK_OK(mp_tape_create(&t));
    mp_var q, k, odd, out = 12345;
    MP_CK_OK(mp_tape_leaf(t, 6, 4, x, 24, 0, &q));
    MP_CK_OK(mp_tape_leaf(t, 6, 4, x, 24, 0, &k));
    MP_CK_OK(mp_tape_leaf(t, 4, 6, x, 24, 0, &odd));
    int64_t before, after;
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &before));
    ck_assert_int_eq(mp__heads_matmul(NULL, q, k, 4, 2, 0, 1, qk, &out), MP_ERR_NULL_POINTER);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 1, qk, NULL), MP_ERR_NULL_POINTER);
    ck_assert_int_eq(mp__heads_matmul(t, q, k + 1000, 4, 2, 0, 1, qk, &out), MP_ERR_UNKNOWN_VARIABLE);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 1, bad_flag, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 1, neg_flag, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 2, 1, qk, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 5, 2, 0, 1, qk, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 0, 0, 1, qk, &out), MP_ERR_INVALID_ARGUMENT);
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 6, 3, 0, 1, qk, &out), MP_ERR_SHAPE_MISMATCH); /* 4 cols, 3 heads */
    ck_assert_int_eq(mp__heads_matmul(t, q, odd, 4, 2, 0, 1, qk, &out), MP_ERR_SHAPE_MISMATCH);
    ck_assert_ptr_nonnull(strstr(mp_tape_error(t), "mp__heads_matmul"));
    ck_assert_int_eq(mp__heads_matmul(t, q, k, 4, 2, 0, 0, qk, &out), MP_ERR_SHAPE_MISMATCH); /* 3x2 by 3x2 */
    MP_CK_OK(mp_tape_stat(t, MP_TAPE_STAT_NODES, &after));
    ck_assert_int_eq(after, before);
    ck_assert_int_eq(out, 12345);
    MP_CK_OK(mp__heads_matmul(t, q, k, 4, 2, 0, 1, qk, &out));
    int32_t r, c;
    MP_CK_OK(mp_tape_shape(t, out, &r, &c));
    ck_assert_int_eq(r, 12);
    ck_assert_int_eq(c, 3);
    mp_tape_destroy(t);
}
END_TEST

Suite *mp_test_tape_fused_suite(void)
{
    Suite *s = suite_create("tape_fused");
    TCase *g = tcase_create("gelu");
    tcase_add_test(g, gelu_higher_derivatives_match_closed_forms);
    tcase_add_test(g, heads_matmul_rejects_bad_inputs);
    suite_add_tcase(s, g);
    return s;
}
