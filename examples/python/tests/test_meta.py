import gc
import os
import subprocess
import sys

import numpy as np
import pytest

import metaprompt as mp
from conftest import PYDIR, ROOT, requires

pytestmark = requires("mp_meta_create", "mp_meta_step", "mp_sampler_create_sinusoid",
                      "mp_model_create")


def sinusoid_setup(algorithm=mp.META_MAML, threads=1):
    cfg = mp.Config({mp.CFG_MODEL_PROMPT_LEN: 2, mp.CFG_MODEL_HIDDEN_WIDTH: 16,
                     mp.CFG_META_ALGORITHM: algorithm, mp.CFG_META_SCOPE: mp.SCOPE_PROMPT_HEAD,
                     mp.CFG_META_INNER_LR: 0.01, mp.CFG_DATA_SHOTS: 5, mp.CFG_DATA_QUERIES: 5,
                     mp.CFG_THREADS: threads})
    model = mp.Model(cfg)
    prompt = mp.Prompt(model).init(mp.PROMPT_INIT_NORMAL, 0.1, 0)
    return cfg, model, prompt, mp.Sampler.sinusoid(cfg), mp.Meta(model, prompt, cfg)


def test_step_updates_prompt_and_keeps_owners_alive(no_leaks):
    cfg, model, prompt, sampler, meta = sinusoid_setup()
    p0 = prompt.get().copy()
    del model, prompt, cfg
    gc.collect()  # the meta keeps its model and prompt alive
    tasks = [sampler.next() for _ in range(4)]
    stats = meta.step(tasks)
    assert set(stats) == {"loss_before", "loss_after", "acc_before", "acc_after"}
    assert np.isnan(stats["acc_before"]) and stats["loss_before"] > 0
    assert meta.step_count == 1
    assert not np.array_equal(meta.prompt.get(), p0)
    mean, ci = meta.evaluate(sampler, 1000, 10)
    assert mean > 0 and ci > 0
    m2, c2 = meta.evaluate_tasks(tasks)
    assert m2 > 0
    adapted = meta.adapt(tasks[0])
    assert adapted.shape == meta.prompt.shape
    for t in tasks:
        t.close()
    meta.close()
    sampler.close()
    adapted.close()


def test_split_gradients_equal_step():
    _, _, pa, sa, ma = sinusoid_setup()
    _, _, pb, sb, mb = sinusoid_setup()
    tasks = [sa.episode(i) for i in range(3)]
    ma.step(tasks)
    mb.compute_gradients(tasks)
    g = mb.get_gradients()
    assert g.shape == (mb.gradient_size,) and np.abs(g).sum() > 0
    mb.set_gradients(g * 2 / 2)       # an external all-reduce would go here
    mb.apply_gradients()
    np.testing.assert_array_equal(pa.get(), pb.get())
    with pytest.raises(mp.MetapromptError) as ei:
        mb.apply_gradients()
    assert ei.value.status == mp.ERR_STATE
    with pytest.raises(mp.MetapromptError) as ei:
        mb.set_gradients(np.zeros(3))
    assert ei.value.status == mp.ERR_SHAPE_MISMATCH


def test_threads_give_identical_results():
    _, _, p1, s1, m1 = sinusoid_setup(threads=1)
    _, _, p2, s2, m2 = sinusoid_setup(threads=2)
    tasks = [s1.episode(i) for i in range(4)]
    m1.step(tasks)
    m2.step(tasks)
    np.testing.assert_array_equal(p1.get(), p2.get())


def test_metasgd_rates_progress_and_eval_steps():
    _, _, _, s, m = sinusoid_setup(algorithm=mp.META_METASGD)
    assert m.inner_lr_count > 0
    np.testing.assert_allclose(m.get_inner_lr(), 0.01)
    seen = []
    m.set_progress(lambda done, total: seen.append((done, total)) and False)
    m.evaluate(s, 0, 3)
    assert seen and seen[-1][0] == 3
    m.set_progress(lambda done, total: True)
    with pytest.raises(mp.MetapromptError) as ei:
        m.evaluate(s, 0, 3)
    assert ei.value.status == mp.ERR_CANCELLED
    assert ei.value.__cause__ is None

    def broken(done, total):
        raise KeyError("from the callback")
    m.set_progress(broken)
    with pytest.raises(mp.MetapromptError) as ei:
        m.evaluate(s, 0, 3)
    assert ei.value.status == mp.ERR_CANCELLED
    assert isinstance(ei.value.__cause__, KeyError) and "from the callback" in str(ei.value.__cause__)
    m.set_progress(lambda done, total: False)
    assert m.evaluate(s, 0, 2)[0] >= 0  # the old exception does not come back
    m.set_progress(None)
    m.set_eval_steps(0)
    with pytest.raises(mp.MetapromptError) as ei:
        m.set_eval_steps(-2)
    assert ei.value.status == mp.ERR_RANGE


def test_meta_errors():
    cfg, model, prompt, sampler, meta = sinusoid_setup()
    with pytest.raises(mp.MetapromptError) as ei:
        meta.step([])
    assert ei.value.status == mp.ERR_INVALID_ARGUMENT and "mp_meta_step" in ei.value.message
    cls = mp.Task.classification(np.zeros((2, 1)), [0, 1], np.zeros((2, 1)), [0, 1])
    with pytest.raises(mp.MetapromptError) as ei:
        meta.step([cls])
    assert ei.value.status == mp.ERR_INVALID_ARGUMENT
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Meta(model, prompt, {mp.CFG_META_LEARN: mp.LEARN_INNER_LR})
    assert ei.value.status == mp.ERR_INVALID_ARGUMENT


def test_checkpoint_with_meta(tmp_path):
    _, model, prompt, sampler, meta = sinusoid_setup()
    meta.step([sampler.episode(0)])
    mp.checkpoint_save(tmp_path / "c", model, prompt, meta)
    _, model2, prompt2, _, meta2 = sinusoid_setup()
    mp.checkpoint_load(tmp_path / "c", model2, prompt2, meta2)
    assert meta2.step_count == 1
    np.testing.assert_array_equal(prompt2.get(), prompt.get())


def _steps(sampler, meta, n):
    for _ in range(n):
        tasks = [sampler.next() for _ in range(3)]
        meta.step(tasks)
        for t in tasks:
            t.close()


def test_checkpoint_with_sampler_resumes_bit_for_bit(tmp_path):
    _, model_a, prompt_a, sampler_a, meta_a = sinusoid_setup()
    _steps(sampler_a, meta_a, 4)
    _, model_b, prompt_b, sampler_b, meta_b = sinusoid_setup()
    _steps(sampler_b, meta_b, 2)
    mp.checkpoint_save(tmp_path / "c", model_b, prompt_b, meta_b, sampler_b)
    _, model_c, prompt_c, sampler_c, meta_c = sinusoid_setup()
    mp.checkpoint_load(tmp_path / "c", model_c, prompt_c, meta_c, sampler_c)
    assert sampler_c.position == 6 and meta_c.step_count == 2
    _steps(sampler_c, meta_c, 2)
    assert sampler_c.position == sampler_a.position == 12
    np.testing.assert_array_equal(prompt_c.get(), prompt_a.get())
    np.testing.assert_array_equal(model_c.get_params(), model_a.get_params())
    # A sampler with another seed is refused and nothing changes.
    other = mp.Sampler.sinusoid(mp.Config({mp.CFG_SEED: 5, mp.CFG_DATA_SHOTS: 5,
                                           mp.CFG_DATA_QUERIES: 5}))
    other.position = 1
    p0 = prompt_c.get().copy()
    with pytest.raises(mp.MetapromptError) as ei:
        mp.checkpoint_load(tmp_path / "c", model_c, prompt_c, meta_c, other)
    assert ei.value.status == mp.ERR_SHAPE_MISMATCH
    assert "mp_checkpoint_load_with_sampler" in ei.value.message and "seed" in ei.value.message
    assert other.position == 1 and meta_c.step_count == 4
    np.testing.assert_array_equal(prompt_c.get(), p0)
    # A file saved without a sampler cannot restore one.
    mp.checkpoint_save(tmp_path / "d", model_c, prompt_c, meta_c)
    with pytest.raises(mp.MetapromptError) as ei:
        mp.checkpoint_load(tmp_path / "d", model_c, prompt_c, meta_c, sampler_c)
    assert ei.value.status == mp.ERR_NOT_FOUND and "meta/sampler_position" in ei.value.message
    assert sampler_c.position == 12


def test_sinusoid_example_runs_and_matches_c():
    env = dict(os.environ, PYTHONPATH=PYDIR, PYTHONDONTWRITEBYTECODE="1", OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, os.path.join(PYDIR, "sinusoid.py"), "20"],
                       capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "test MSE after adaptation" in r.stdout and "new wave" in r.stdout
    c_example = os.path.join(ROOT, "lib", "examples", "sinusoid")
    if not os.path.exists(c_example):
        pytest.skip("lib/examples/sinusoid not built (make bindings-check builds it)")
    c = subprocess.run([c_example, "20"], capture_output=True, text=True, env=env, timeout=120)
    assert c.returncode == 0, c.stderr
    # Same configuration, same episodes: the same numbers, line for line.
    assert r.stdout.splitlines()[1:1 + len(c.stdout.splitlines())] == c.stdout.splitlines()


def test_model_without_prompt():
    """P == 0 (plain MAML): no prompt handle at all."""
    model = mp.Model()
    meta = mp.Meta(model, None, {mp.CFG_META_SCOPE: mp.SCOPE_ALL})
    tasks = [mp.Task.sinusoid(1, i, 5, 5) for i in range(4)]
    st = meta.step(tasks)
    assert st["loss_before"] > 0 and np.isnan(st["acc_after"])
    out = model.clone()
    assert meta.adapt(tasks[0], out_model=out) is None
    assert not np.array_equal(out.get_params(), model.get_params())
    assert meta.inner_lr_count == 0 and meta.get_inner_lr().size == 0
    with pytest.raises(mp.MetapromptError) as ei:
        meta.apply_gradients()
    assert ei.value.status == mp.ERR_STATE


def test_hyper_parameters_change_between_steps(tmp_path):
    """Meta.set/get: an outer-rate schedule and a FOMAML -> MAML switch in
    place equal loading the state into a meta created with those values."""
    cfg, model, prompt, sampler, meta = sinusoid_setup(mp.META_FOMAML)
    assert meta.get("meta.algorithm") == mp.META_FOMAML
    assert meta.get(mp.CFG_META_OUTER_LR) == pytest.approx(1e-3)
    assert meta.get(mp.CFG_THREADS) == 1
    for _ in range(2):
        meta.step([sampler.next() for _ in range(4)])
    path = tmp_path / "s.ckpt"
    mp.checkpoint_save(path, model, prompt, meta, sampler)
    meta.set("meta.algorithm", mp.META_MAML).set(mp.CFG_META_OUTER_LR, 5e-4)
    assert meta.get_int(mp.CFG_META_ALGORITHM) == mp.META_MAML
    assert meta.get_float("meta.outer_lr") == 5e-4
    for _ in range(2):
        meta.step([sampler.next() for _ in range(4)])
    cfg2, model2, prompt2, sampler2, meta2 = sinusoid_setup(mp.META_MAML)
    meta2.set_float(mp.CFG_META_OUTER_LR, 5e-4)
    mp.checkpoint_load(path, model2, prompt2, meta2, sampler2)
    for _ in range(2):
        meta2.step([sampler2.next() for _ in range(4)])
    np.testing.assert_array_equal(prompt2.get(), prompt.get())
    np.testing.assert_array_equal(model2.get_params(), model.get_params())
    assert meta2.step_count == meta.step_count == 4
    for bad, status in (((mp.CFG_META_SCOPE, mp.SCOPE_ALL), mp.ERR_UNSUPPORTED),
                        ((mp.CFG_META_ALGORITHM, mp.META_METASGD), mp.ERR_UNSUPPORTED),
                        (("meta.outer_lr", -1.0), mp.ERR_RANGE),
                        ((mp.CFG_META_OUTER_LR, float("nan")), mp.ERR_NOT_FINITE),
                        ((mp.CFG_SEED, 3), mp.ERR_NOT_FOUND)):
        with pytest.raises(mp.MetapromptError) as ei:
            meta.set(*bad)
        assert ei.value.status == status
    with pytest.raises(OverflowError):
        meta.set_int(mp.CFG_META_INNER_STEPS, 1 << 70)
    # strict keys and values (a float key would have been truncated to
    # another key, a string parsed as a rate), unknown keys are the
    # library's MP_ERR_NOT_FOUND whatever the value
    for call in (lambda: meta.get(300.7), lambda: meta.get(True), lambda: meta.set(306.0, 1e-3),
                 lambda: meta.set("meta.outer_lr", "0.1"), lambda: meta.set_float(mp.CFG_META_OUTER_LR, True),
                 lambda: meta.set("meta.inner_steps", 2.5), lambda: meta.set_eval_steps(2.9)):
        with pytest.raises(TypeError):
            call()
    with pytest.raises(mp.MetapromptError) as ei:
        meta.set(12345, 1.5)
    assert ei.value.status == mp.ERR_NOT_FOUND and "12345" in ei.value.message
    meta.set("meta.inner_steps", np.float32(3))
    meta.set_eval_steps(2.0)
    assert meta.get("meta.eval_inner_steps") == 2
    meta.set_eval_steps(-1)  # follow the inner steps again
    assert meta.get("meta.eval_inner_steps") == 3
    meta.set("meta.inner_steps", 1)
    assert meta.get("meta.outer_lr") == 5e-4 and meta.get("meta.scope") == mp.SCOPE_PROMPT_HEAD
