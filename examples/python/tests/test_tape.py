import threading

import numpy as np
import pytest

import metaprompt as mp
from conftest import requires

pytestmark = requires("mp_tape_create", "mp_matmul", "mp_tape_backward")


def test_leaf_read_roundtrip_and_shapes(no_leaks):
    with mp.Tape() as t:
        a = np.arange(6, dtype=np.float32).reshape(2, 3)
        v = t.leaf(a)
        assert t.shape(v) == (2, 3)
        np.testing.assert_array_equal(t.read(v), a)
        assert t.shape(t.leaf([1.0, 2.0, 3.0])) == (1, 3)
        s = t.leaf(2.5)
        assert t.shape(s) == (1, 1) and t.scalar(s) == 2.5
        f = t.fill(2, 2, 3.0)
        np.testing.assert_array_equal(t.read(f), np.full((2, 2), 3.0, np.float32))
        # float64 and non-contiguous input are converted
        b = np.arange(12.0).reshape(3, 4)[:, ::2]
        np.testing.assert_array_equal(t.read(t.leaf(b)), b.astype(np.float32))
        # explicit shape
        assert t.shape(t.leaf(np.zeros(6), shape=(3, 2))) == (3, 2)


def test_read_into_out_buffer():
    with mp.Tape() as t:
        v = t.leaf(np.ones((2, 2)))
        out = np.zeros(4, np.float32)
        r = t.read(v, out=out)
        assert r is out and out.sum() == 4
        with pytest.raises(ValueError):
            t.read(v, out=np.zeros(3, np.float32))
        with pytest.raises(TypeError):
            t.read(v, out=np.zeros(4, np.float64))


def test_matmul_and_elementwise_match_numpy():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    with mp.Tape() as t:
        va, vb = t.leaf(a), t.leaf(b)
        np.testing.assert_allclose(t.read(t.matmul(va, vb)), a @ b, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(t.read(t.matmul(vb, va, True, True)), (a @ b).T, rtol=1e-5,
                                   atol=1e-5)
        row = t.leaf(np.ones((1, 4), np.float32))
        np.testing.assert_allclose(t.read(t.add(va, row)), a + 1, rtol=1e-6)
        np.testing.assert_allclose(t.read(t.tanh(va)), np.tanh(a), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(t.read(t.sum(va, mp.REDUCE_PER_ROW)),
                                   a.sum(1, keepdims=True), rtol=1e-5, atol=1e-5)
        sm = t.read(t.softmax(va))
        np.testing.assert_allclose(sm.sum(1), np.ones(3), rtol=1e-5)


def test_backward_gradient_and_second_order():
    x0 = np.array([[0.5, -1.0, 2.0]], np.float32)
    with mp.Tape() as t:
        x = t.leaf(x0, requires_grad=True)
        # L = sum(x^3) / 3 -> dL/dx = x^2 ; d/dx sum(dL/dx) = 2x
        cube = t.mul(t.square(x), x)
        loss = t.scale(t.sum(cube), 1.0 / 3.0)
        t.backward(loss, create_graph=True)
        g = t.grad(x)
        np.testing.assert_allclose(t.read(g), x0 ** 2, rtol=1e-5)
        t.backward(t.sum(g))
        np.testing.assert_allclose(t.read(t.grad(x)), 2 * x0, rtol=1e-5)


def test_backward_wrt_only_follows_paths_from_wrt():
    with mp.Tape() as t:
        x = t.leaf(np.array([[3.0]], np.float32), requires_grad=True)
        y = t.leaf(np.array([[2.0]], np.float32), requires_grad=True)
        s = t.add(t.mul(x, y), t.square(y))
        t.backward_wrt(s, [x], create_graph=True)
        assert t.scalar(t.grad(x)) == 2.0
        assert t.scalar(t.grad(y)) == 0.0
        t.backward_wrt(t.grad(x), [y])
        assert t.scalar(t.grad(y)) == 1.0


def test_cross_entropy_with_int_labels():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], np.float32)
    labels = np.array([0, 2])
    e = np.exp(logits - logits.max(1, keepdims=True))
    p = e / e.sum(1, keepdims=True)
    want = -np.mean(np.log(p[[0, 1], labels]))
    with mp.Tape() as t:
        assert abs(t.scalar(t.cross_entropy(t.leaf(logits), labels)) - want) < 1e-5
        with pytest.raises(TypeError):
            t.cross_entropy(t.leaf(logits), np.array([0.0, 2.0]))


def test_borrowed_leaf_is_kept_alive():
    with mp.Tape() as t:
        v = t.leaf(np.arange(4, dtype=np.float32), borrow=True)  # temporary array
        import gc
        gc.collect()
        np.testing.assert_array_equal(t.read(v), np.arange(4, dtype=np.float32)[None, :])
        with pytest.raises(TypeError):
            t.leaf(np.arange(4.0), borrow=True)  # float64 would need a copy
        t.reset()
        assert t._borrowed == []


def test_errors_name_the_op_and_leave_tape_unchanged():
    with mp.Tape() as t:
        a = t.leaf(np.zeros((2, 3)))
        b = t.leaf(np.zeros((2, 3)))
        nodes = t.stat("nodes")
        with pytest.raises(mp.MetapromptError) as ei:
            t.matmul(a, b)
        assert ei.value.status == mp.ERR_SHAPE_MISMATCH
        assert "mp_matmul" in ei.value.message
        assert t.error() == ei.value.message
        assert t.stat("nodes") == nodes
        with pytest.raises(mp.MetapromptError) as ei:
            t.relu(12345)
        assert ei.value.status == mp.ERR_UNKNOWN_VARIABLE
        with pytest.raises(mp.MetapromptError):
            t.leaf(np.zeros(5), shape=(2, 3))
        t.reset()
        assert t.stat(mp.TAPE_STAT_NODES) == 0
        with pytest.raises(mp.MetapromptError):
            t.read(a)


def test_stale_and_foreign_ids_are_rejected():
    with mp.Tape() as t, mp.Tape() as u:
        a = t.leaf(np.ones((2, 2)))
        t.reset()
        b = t.leaf(np.zeros((2, 2)))  # the slot a had: a still fails
        assert b != a
        with pytest.raises(mp.MetapromptError) as ei:
            t.read(a)
        assert ei.value.status == mp.ERR_UNKNOWN_VARIABLE
        assert "before the last mp_tape_reset" in ei.value.message
        c = u.leaf(np.ones((2, 2)))
        if c == b:  # both tapes drew the same tag (1 in 127): step u's
            u.reset()
            c = u.leaf(np.ones((2, 2)))
        with pytest.raises(mp.MetapromptError) as ei:
            t.relu(c)
        assert ei.value.status == mp.ERR_UNKNOWN_VARIABLE
        assert "on another tape" in ei.value.message
        np.testing.assert_array_equal(t.read(b), np.zeros((2, 2), np.float32))


def test_distinct_tapes_in_threads():
    def work(seed, out):
        rng = np.random.default_rng(seed)
        a = rng.standard_normal((16, 16)).astype(np.float32)
        with mp.Tape() as t:
            for _ in range(20):
                t.reset()
                v = t.leaf(a)
                r = t.read(t.matmul(v, v))
        out[seed] = np.abs(r - a @ a).max()
    out = {}
    th = [threading.Thread(target=work, args=(i, out)) for i in range(2)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    assert max(out.values()) < 1e-3


def test_all_ops_callable():
    """Smoke-calls every op so a wrong ctypes signature shows up."""
    with mp.Tape() as t:
        x = t.leaf(np.linspace(0.1, 1.0, 8).reshape(2, 4), requires_grad=True)
        y = t.leaf(np.linspace(1.0, 2.0, 8).reshape(2, 4))
        for op in (t.relu, t.tanh, t.sigmoid, t.gelu, t.exp, t.log, t.sqrt, t.square,
                   t.softmax, t.log_softmax, t.transpose):
            op(x)
        for op in (t.add, t.sub, t.mul, t.div, t.mse):
            op(x, y)
        t.scale(x, 2.0)
        t.add_scalar(x, 1.0)
        t.mean(x, mp.REDUCE_PER_COL)
        g = t.leaf(np.ones((1, 4)))
        assert t.shape(t.layer_norm(x, g, None, 1e-5)) == (2, 4)
        assert t.shape(t.gather_rows(x, [1, 0, 1])) == (3, 4)
        assert t.shape(t.concat(x, y, mp.AXIS_COLS)) == (2, 8)
        assert t.shape(t.slice(x, mp.AXIS_COLS, 1, 2)) == (2, 2)
        assert t.shape(t.reshape(x, 4, 2)) == (4, 2)
        img = t.leaf(np.ones((2, 1 * 4 * 4)))
        w = t.leaf(np.ones((3, 1 * 3 * 3)))
        c = t.conv2d(img, w, None, 1, 4, 4, 3, 1, 1)
        assert t.shape(c) == (2, 3 * 4 * 4)
        assert t.shape(t.maxpool2d(c, 3, 4, 4)) == (2, 3 * 2 * 2)
        q = t.leaf(np.ones((2 * 3, 4)))  # batch 2, seq 3, 2 heads of 2
        h = t.split_heads(q, 2, 3, 2)
        assert t.shape(h) == (2 * 2 * 3, 2)
        assert t.shape(t.merge_heads(h, 2, 3, 2)) == (6, 4)
        s = t.batch_matmul(h, h, 4, False, True)
        assert t.shape(s) == (4 * 3, 3)
        t.backward(t.sum(t.square(x)))
        assert t.stat("heap_bytes") > 0 and t.stat("arena_high") >= t.stat("arena_used")
