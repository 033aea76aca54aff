import math

import numpy as np
import pytest

import metaprompt as mp


def sinusoid_meta(algo=mp.META_MAML, threads=1):
    model = mp.Model()
    cfg = mp.Config({mp.CFG_META_ALGORITHM: algo, mp.CFG_META_SCOPE: mp.SCOPE_ALL,
                     mp.CFG_THREADS: threads})
    return model, mp.Meta(model, None, cfg)


def test_step_evaluate_and_gradients():
    model, meta = sinusoid_meta()
    tasks = [mp.Task.sinusoid(1, i, 5, 5) for i in range(4)]
    st = meta.step(tasks)
    assert st["loss_before"] > 0 and math.isnan(st["acc_after"])
    assert meta.step_count == 1
    meta.compute_gradients(tasks)
    g = meta.get_gradients()
    assert g.size == meta.gradient_size
    meta.set_gradients(g)
    meta.apply_gradients()
    mean, ci = meta.evaluate_tasks(tasks)
    assert mean > 0 and ci > 0
    seen = []
    meta.set_progress(lambda d, t: seen.append(d) or False)
    sampler = mp.Sampler.sinusoid(mp.Config({mp.CFG_DATA_SHOTS: 5}))
    mean2, _ = meta.evaluate(sampler, 0, 20)
    assert seen and seen[-1] == 20 and mean2 > 0
    meta.set_progress(None)
    meta.set_eval_steps(2)
    out = model.clone()
    meta.adapt(tasks[0], None, out)
    assert meta.inner_lr().size == 0


def test_errors_raise():
    model, meta = sinusoid_meta()
    with pytest.raises(mp.MetapromptError) as e:
        meta.step([])
    assert e.value.status == mp.ERR_INVALID_ARGUMENT
    with pytest.raises(mp.MetapromptError):
        meta.apply_gradients()
