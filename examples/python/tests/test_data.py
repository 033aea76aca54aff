import gc

import numpy as np
import pytest

import metaprompt as mp
from conftest import requires

pytestmark = requires("mp_dataset_from_arrays", "mp_sampler_create", "mp_task_sinusoid")


def toy_dataset(classes=6, per_class=8, dim=4):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((classes * per_class, dim)).astype(np.float32)
    y = np.repeat(np.arange(classes), per_class)
    return mp.Dataset(x, labels=y), x, y


def test_dataset_from_arrays(no_leaks):
    ds, x, y = toy_dataset()
    with ds:
        assert len(ds) == 48 and ds.dim == 4 and ds.num_classes == 6 and ds.target_dim == 0
        assert ds.class_size(2) == 8
        idx = ds.class_indices(2)
        np.testing.assert_array_equal(idx, np.flatnonzero(y == 2))
        assert ds.get(int(idx[0]))[1] == 2
        with pytest.raises(mp.MetapromptError) as ei:
            ds.class_indices(6)
        assert ei.value.status == mp.ERR_RANGE and "cls is 6" in ei.value.message
        xi, li = ds.get(9)
        np.testing.assert_array_equal(xi, x[9])
        assert li == y[9]
        assert ds.sample_shape == (4,)
        ds.set_sample_shape([2, 2])
        assert ds.sample_shape == (2, 2)
        sub = ds.select_classes([1, 3])
        assert len(sub) == 16 and sub.num_classes == 4
        sub.close()


def test_dataset_images_keep_sample_shape():
    x = np.zeros((3, 1, 2, 2), np.float32)
    with mp.Dataset(x, labels=[0, 1, 2]) as ds:
        assert ds.dim == 4 and ds.sample_shape == (1, 2, 2)


def test_regression_dataset():
    x = np.arange(10, dtype=np.float32).reshape(5, 2)
    t = np.arange(5, dtype=np.float32).reshape(5, 1) * 2
    with mp.Dataset(x, targets=t) as ds:
        assert ds.target_dim == 1
        np.testing.assert_array_equal(ds.get(2), x[2])
        np.testing.assert_array_equal(ds.get_target(2), t[2])
        with pytest.raises(mp.MetapromptError) as ei:
            ds.num_classes
        assert ei.value.status == mp.ERR_STATE


def test_dataset_errors():
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Dataset(np.zeros((2, 2)), labels=[0, -1])
    assert ei.value.status == mp.ERR_RANGE and "mp_dataset_from_arrays" in ei.value.message
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Dataset(np.array([[np.nan, 0.0]]), labels=[0])
    assert ei.value.status == mp.ERR_NOT_FINITE
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Dataset.load_idx("/nonexistent/images", "/nonexistent/labels")
    assert ei.value.status == mp.ERR_IO and "/nonexistent" in ei.value.message
    ds, _, _ = toy_dataset()
    with pytest.raises(mp.MetapromptError) as ei:
        ds.get(1000)
    assert ei.value.status == mp.ERR_RANGE


def test_csv(tmp_path):
    p = tmp_path / "d.csv"
    p.write_text("1.0,2.0,0\n3.0,4.0,1\n5.0,6.0,1\n")
    with mp.Dataset.load_csv(p) as ds:
        assert len(ds) == 3 and ds.dim == 2 and ds.num_classes == 2


def test_tasks():
    sx = np.arange(8, dtype=np.float32).reshape(4, 2)
    t = mp.Task.classification(sx, [0, 1, 0, 1], sx[:2], [1, 0])
    assert t.sizes() == (4, 2, 2, 2, 0)
    x, lab = t.support()
    np.testing.assert_array_equal(x, sx)
    np.testing.assert_array_equal(lab, [0, 1, 0, 1])
    qx, ql = t.query()
    np.testing.assert_array_equal(ql, [1, 0])
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Task.classification(sx, [0, 1, 0, 5], sx[:2], [1, 0], n_way=2)
    assert ei.value.status == mp.ERR_RANGE
    r = mp.Task.regression(sx, np.ones(4), sx[:1], np.ones(1))
    assert r.sizes() == (4, 1, 2, 0, 1)
    s = mp.Task.sinusoid(seed=3, index=5, k_support=10, k_query=7)
    amp, phase = s.sinusoid_params()
    x, y = s.support()
    assert x.shape == (10, 1) and y.shape == (10, 1)
    np.testing.assert_allclose(y, amp * np.sin(x - phase), rtol=1e-4, atol=1e-4)
    with pytest.raises(mp.MetapromptError) as ei:
        t.sinusoid_params()
    assert ei.value.status == mp.ERR_STATE


def test_sampler_episodes_are_deterministic_and_keep_dataset_alive():
    ds, _, _ = toy_dataset()
    cfg = mp.Config({mp.CFG_DATA_WAYS: 3, mp.CFG_DATA_SHOTS: 2, mp.CFG_DATA_QUERIES: 3,
                     mp.CFG_SEED: 11})
    s = mp.Sampler(ds, cfg)
    del ds, cfg
    gc.collect()  # the sampler still holds its dataset
    assert s.info() == (3, 2, 3, 4)
    e0 = s.episode(0)
    x0, l0 = e0.support()
    assert x0.shape == (6, 4) and sorted(l0.tolist()) == [0, 0, 1, 1, 2, 2]
    assert s.position == 0
    n0 = s.next()
    assert s.position == 1
    np.testing.assert_array_equal(n0.support()[0], x0)
    t = s.episode_into(5, e0)
    np.testing.assert_array_equal(t.query()[0], s.episode(5).query()[0])
    s.position = 0
    np.testing.assert_array_equal(s.next().support()[0], x0)


def test_sampler_errors():
    ds, _, _ = toy_dataset(classes=2)
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Sampler(ds, {mp.CFG_DATA_WAYS: 5})
    assert ei.value.status == mp.ERR_RANGE
    reg = mp.Dataset(np.zeros((2, 2)), targets=np.zeros(2))
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Sampler(reg)
    assert ei.value.status == mp.ERR_STATE


def test_sinusoid_sampler():
    with mp.Sampler.sinusoid({mp.CFG_DATA_SHOTS: 5, mp.CFG_DATA_QUERIES: 4}) as s:
        assert s.info() == (0, 5, 4, 1)
        t = s.next()
        assert t.sizes()[:2] == (5, 4)


def test_closing_a_borrowed_dataset_waits_for_its_sampler(no_leaks):
    ds, _, _ = toy_dataset()
    s = mp.Sampler(ds, {mp.CFG_DATA_WAYS: 2, mp.CFG_DATA_SHOTS: 1, mp.CFG_DATA_QUERIES: 1})
    ds.close()                      # the sampler still uses it in C
    assert ds.closed
    with pytest.raises(mp.MetapromptError) as ei:
        len(ds)
    assert ei.value.status == mp.ERR_STATE
    before = mp.live_allocations()
    s.episode(3).close()            # no dangling pointer
    s.close()                       # now both C objects go
    assert mp.live_allocations() < before
