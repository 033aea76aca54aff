"""Integers that do not fit the C parameter are refused, never wrapped: ctypes
and numpy's astype(int32) wrap silently (labels [0, 1, 2**32] used to give
the loss of [0, 1, 0], Config({CFG_SEED: 2**70}) set the seed to 0 and 2**63
came back as a negative number), so the binding checks before calling C,
naming the argument. Also: Prompt.set() checks the full (P, d) shape."""
import numpy as np
import pytest

import metaprompt as mp
from metaprompt._base import as_i32, shaped


def small_classifier():
    return mp.Model({mp.CFG_MODEL_INPUT_DIM: 3, mp.CFG_MODEL_OUTPUT_DIM: 4,
                     mp.CFG_MODEL_TASK: mp.TASK_CLASSIFICATION, mp.CFG_MODEL_PROMPT_LEN: 2,
                     mp.CFG_MODEL_HIDDEN_WIDTH: 8, mp.CFG_SEED: 1})


# ---- int32 arrays --------------------------------------------------------------
@pytest.mark.parametrize("values, bad", [
    (np.array([0, 1, 2**32]), 2**32),
    (np.array([0, -2**31 - 1, 1]), -2**31 - 1),
    (np.array([0, 2**31], np.uint32), 2**31),
    (np.array([1, 2**63 + 5], np.uint64), 2**63 + 5),
])
def test_as_i32_refuses_values_outside_int32(values, bad):
    with pytest.raises(ValueError) as e:
        as_i32(values, "Foo.bar: labels")
    assert str(e.value) == ("Foo.bar: labels: value %d at index %d is outside the int32 range "
                            "[-2147483648, 2147483647]" % (bad, list(values).index(bad)))


def test_as_i32_keeps_values_that_fit():
    edge = np.array([-2**31, 0, 2**31 - 1], np.int64)
    np.testing.assert_array_equal(as_i32(edge, "x"), edge)
    assert as_i32(edge, "x").dtype == np.int32
    np.testing.assert_array_equal(as_i32(np.array([[1, 2], [3, 2**31 - 1]], np.uint64), "x"),
                                  [[1, 2], [3, 2**31 - 1]])
    with pytest.raises(ValueError) as e:  # 2-D: the index is a tuple
        as_i32(np.array([[1, 2], [3, 2**40]]), "x")
    assert "at index (1, 1)" in str(e.value)
    with pytest.raises(TypeError) as e:
        shaped(np.array([0.5, 1.0]), "Model.loss: labels", 2, conv=as_i32)
    assert "Model.loss: labels" in str(e.value)


def test_loss_labels_beyond_int32_are_refused():
    with small_classifier() as m:
        x = np.arange(9, dtype=np.float32).reshape(3, 3) / 10
        ok = m.loss(x, labels=np.array([0, 1, 0]))
        assert m.loss(x, labels=np.array([0, 1, 0], np.int64)) == ok
        with pytest.raises(ValueError) as e:
            m.loss(x, labels=np.array([0, 1, 2**32]))
        assert "Model.loss: labels: value 4294967296 at index 2" in str(e.value)


def test_task_and_dataset_labels_beyond_int32_are_refused():
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError) as e:
        mp.Task.classification(x, np.array([0, 1, 2**32 + 2]), x, np.array([0, 1, 2]), n_way=4)
    assert "Task.classification: support_labels: value 4294967298 at index 2" in str(e.value)
    with pytest.raises(ValueError) as e:
        mp.Task.classification(x, [0, 1, 2], x, np.array([0, -2**40, 2]), n_way=4)
    assert "Task.classification: query_labels" in str(e.value)
    with pytest.raises(ValueError) as e:
        mp.Dataset(np.zeros((4, 3), np.float32), labels=np.array([0, 1, 2**32, 2**32 + 1]))
    assert "Dataset: labels: value 4294967296 at index 2" in str(e.value)
    # The control: the same labels within range are accepted.
    t = mp.Task.classification(x, np.array([0, 1, 2], np.int64), x, np.array([0, 1, 2]), n_way=4)
    np.testing.assert_array_equal(t.support()[1], [0, 1, 2])
    t.close()


# ---- int64 configuration values ------------------------------------------------------
@pytest.mark.parametrize("value", [2**70, 2**63, -2**63 - 1])
def test_config_int_values_beyond_int64_are_refused(value):
    for setter in (lambda c: c.set(mp.CFG_SEED, value), lambda c: c.set_int("seed", value),
                   lambda c: c.__setitem__(mp.CFG_SEED, value)):
        cfg = mp.Config({mp.CFG_SEED: 7})
        with pytest.raises(OverflowError) as e:
            setter(cfg)
        assert "key 'seed' (1)" in str(e.value) and str(value) in str(e.value)
        assert cfg.get_int(mp.CFG_SEED) == 7  # unchanged
    with pytest.raises(OverflowError):
        mp.Config({mp.CFG_SEED: value})


def test_config_int_values_in_int64_reach_the_library():
    cfg = mp.Config({mp.CFG_SEED: 3.0, mp.CFG_DATA_WAYS: np.int64(5)})
    assert cfg.get_int(mp.CFG_SEED) == 3 and cfg.get_int(mp.CFG_DATA_WAYS) == 5
    # In int64 but outside the key's range: the library's MP_ERR_RANGE, with
    # the value as given (2**40, not a wrapped one).
    with pytest.raises(mp.MetapromptError) as e:
        cfg.set(mp.CFG_DATA_WAYS, 2**40)
    assert e.value.status == mp.ERR_RANGE and str(2**40) in e.value.message
    with pytest.raises(mp.MetapromptError) as e:
        cfg.set(mp.CFG_SEED, 2**63 - 1)
    assert e.value.status == mp.ERR_RANGE and str(2**63 - 1) in e.value.message
    with pytest.raises(TypeError):
        cfg.set(mp.CFG_SEED, "3")
    with pytest.raises(TypeError):
        cfg.set(mp.CFG_SEED, 1.5)


# ---- every other integer parameter ---------------------------------------------------
def test_scalar_integer_arguments_are_range_checked():
    sampler = mp.Sampler.sinusoid()
    with pytest.raises(OverflowError) as e:
        sampler.episode(-1)
    assert str(e.value).startswith("mp_sampler_episode: argument 2 (uint64) must be in [0, ")
    with pytest.raises(OverflowError):
        sampler.position = 2**64
    assert sampler.position == 0
    t = sampler.episode(2**64 - 1)  # the largest index is valid
    t.close()
    with small_classifier() as m, mp.Prompt(m) as p:
        with pytest.raises(OverflowError) as e:
            p.init(mp.PROMPT_INIT_NORMAL, 0.1, seed=-1)
        assert "mp_prompt_init: argument 4 (uint64)" in str(e.value)
        with pytest.raises(OverflowError) as e:
            p.init(2**32 + mp.PROMPT_INIT_NORMAL, 0.1, seed=1)  # would have wrapped to NORMAL
        assert "mp_prompt_init: argument 2 (int32)" in str(e.value)
        assert not p.get().any()
    sampler.close()


# ---- Prompt.set shape ---------------------------------------------------------------
def test_prompt_set_checks_the_full_shape():
    with small_classifier() as m, mp.Prompt(m) as p:
        P, d = p.shape
        assert (P, d) == (2, 3)
        with pytest.raises(ValueError) as e:
            p.set(np.ones((3, 2), np.float32))  # six values, transposed shape
        assert str(e.value) == "Prompt.set: values must have shape (2, 3) or (6,), got (3, 2)"
        with pytest.raises(ValueError):
            p.set(np.ones((1, 2, 3), np.float32))
        assert not p.get().any()
        v = np.arange(6, dtype=np.float32).reshape(2, 3)
        p.set(v)
        np.testing.assert_array_equal(p.get(), v)
        p.set(v.ravel()[::-1].copy())  # documented: P*d values, row-major
        np.testing.assert_array_equal(p.get(), v[::-1, ::-1])


# ---- a meta with another model's handles (the library refuses them) -------------------
def test_checkpoint_refuses_a_meta_of_other_handles(tmp_path):
    m1, m2 = small_classifier(), small_classifier()
    p1, p2 = mp.Prompt(m1), mp.Prompt(m2)
    meta = mp.Meta(m1, p1)
    mp.checkpoint_save(tmp_path / "c", m1, p1, meta)
    for model, prompt, what in ((m2, p2, "another model"), (m1, p2, "another prompt")):
        with pytest.raises(mp.MetapromptError) as e:
            mp.checkpoint_load(tmp_path / "c", model, prompt, meta)
        assert e.value.status == mp.ERR_INVALID_ARGUMENT
        assert "mp_checkpoint_load: meta was created for " + what in e.value.message
        with pytest.raises(mp.MetapromptError) as e:
            mp.checkpoint_save(tmp_path / "d", model, prompt, meta)
        assert "mp_checkpoint_save: meta was created for " + what in e.value.message
    mp.checkpoint_load(tmp_path / "c", m1, p1, meta)


# ---- strict keys, numbers and integers -------------------------------------------------
def test_keys_are_key_numbers_or_names_only():
    """A float or bool key would have been truncated to another key
    (300.7 -> meta.algorithm, True -> seed)."""
    cfg = mp.Config({mp.CFG_SEED: 7})
    for bad in (300.7, 1.0, True, np.float64(1.0), None, [1]):
        for call in (lambda: cfg.get(bad), lambda: cfg.set(bad, 1), lambda: cfg.get_int(bad),
                     lambda: cfg.set_float(bad, 1.0), lambda: mp.key_name(bad), lambda: mp.key_type(bad)):
            with pytest.raises(TypeError) as e:
                call()
            assert "a configuration key is a CFG_* integer or a key name" in str(e.value)
    assert cfg.get(np.int32(mp.CFG_SEED)) == 7 and cfg.get("seed") == 7


def test_float_values_are_numbers_only():
    cfg = mp.Config()
    for bad in ("0.1", b"0.1", True, np.array([0.1]), None):
        for call in (lambda: cfg.set(mp.CFG_META_OUTER_LR, bad), lambda: cfg.set_float("meta.outer_lr", bad)):
            with pytest.raises(TypeError) as e:
                call()
            assert "key 'meta.outer_lr' (306) is a number" in str(e.value)
    assert not cfg.is_set(mp.CFG_META_OUTER_LR)
    cfg.set(mp.CFG_META_OUTER_LR, np.float32(0.5)).set("meta.inner_lr", 1)
    assert cfg.get(mp.CFG_META_OUTER_LR) == 0.5 and cfg.get(mp.CFG_META_INNER_LR) == 1.0


def test_integer_values_refuse_fractions_and_strings_everywhere():
    """Integral floats of any kind are integers (5.0, np.float32(5)); 2.9,
    NaN and "3" are TypeErrors, where int() would have truncated or parsed."""
    cfg = mp.Config()
    cfg.set(mp.CFG_DATA_WAYS, np.float32(5))
    assert cfg.get(mp.CFG_DATA_WAYS) == 5
    for bad in (2.9, float("nan"), float("inf"), "3", np.float32(2.5), True, np.bool_(False)):
        with pytest.raises(TypeError):
            cfg.set(mp.CFG_DATA_WAYS, bad)
    sampler = mp.Sampler.sinusoid()
    for call in (lambda: sampler.episode(2.9), lambda: sampler.episode("3"),
                 lambda: setattr(sampler, "position", 1.5), lambda: mp.Task.sinusoid(1, 2.5),
                 lambda: mp.Task.sinusoid("1", 2), lambda: mp.status_string(1.5)):
        with pytest.raises(TypeError) as e:
            call()
        assert "is an integer" in str(e.value)
    assert sampler.position == 0
    sampler.episode(3.0).close()
    sampler.close()


def test_unknown_keys_are_the_librarys_not_found_whatever_the_value():
    cfg = mp.Config()
    for value in (1.5, 3, "x"):
        with pytest.raises(mp.MetapromptError) as e:
            cfg.set(12345, value)
        assert e.value.status == mp.ERR_NOT_FOUND and "12345" in e.value.message
