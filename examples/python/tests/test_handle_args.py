"""Handle arguments of the wrong kind (None where a handle is required, an
int, a handle of another class) raise TypeError naming the method, the
argument and, in a list, the index, before any C call: not an
AttributeError on .ptr, and nothing changes."""
import re

import numpy as np
import pytest

import metaprompt as mp
from conftest import requires

pytestmark = requires("mp_meta_create", "mp_meta_step", "mp_sampler_create_sinusoid",
                      "mp_model_create", "mp_checkpoint_save_with_sampler")


@pytest.fixture
def setup():
    cfg = mp.Config({mp.CFG_MODEL_PROMPT_LEN: 2, mp.CFG_MODEL_HIDDEN_WIDTH: 8,
                     mp.CFG_META_SCOPE: mp.SCOPE_PROMPT_HEAD, mp.CFG_DATA_SHOTS: 3,
                     mp.CFG_DATA_QUERIES: 3})
    model = mp.Model(cfg)
    prompt = mp.Prompt(model).init(mp.PROMPT_INIT_NORMAL, 0.1, 0)
    sampler = mp.Sampler.sinusoid(cfg)
    meta = mp.Meta(model, prompt, cfg)
    tasks = [sampler.episode(i) for i in range(3)]
    yield cfg, model, prompt, sampler, meta, tasks
    for h in tasks + [meta, sampler, prompt, model, cfg]:
        h.close()


def raises(exact, call):
    """call() raises TypeError whose message is exactly `exact`."""
    with pytest.raises(TypeError) as e:
        call()
    assert str(e.value) == exact
    return e.value


@pytest.mark.parametrize("method", ["step", "compute_gradients", "evaluate_tasks"])
def test_task_lists_name_the_bad_element(setup, method):
    _, model, prompt, sampler, meta, tasks = setup
    fn = getattr(meta, method)
    name = "Meta.%s: tasks" % method
    p0 = prompt.get().copy()
    raises(name + "[0] is not a Task (got None)", lambda: fn([None]))
    raises(name + "[0] is not a Task (got int)", lambda: fn([42]))
    raises(name + "[2] is not a Task (got None)", lambda: fn([tasks[0], tasks[1], None]))
    raises(name + "[1] is not a Task (got Sampler)", lambda: fn([tasks[0], sampler]))
    raises(name + "[1] is not a Task (got Model)", lambda: fn((t for t in [tasks[0], model])))
    raises(name + " must be a sequence of Task, got Task (pass [task])", lambda: fn(tasks[0]))
    raises(name + " must be a sequence of Task, got int", lambda: fn(7))
    raises(name + " must be a sequence of Task, got None", lambda: fn(None))
    # nothing happened in C: no step, no pending gradient, the prompt as it was
    assert meta.step_count == 0
    np.testing.assert_array_equal(prompt.get(), p0)
    with pytest.raises(mp.MetapromptError) as e:
        meta.apply_gradients()
    assert e.value.status == mp.ERR_STATE
    # the same call with good tasks works (a list, a tuple or a generator)
    fn(tasks)
    fn(tuple(tasks))
    fn(t for t in tasks)


def test_single_handle_arguments(setup, tmp_path):
    cfg, model, prompt, sampler, meta, tasks = setup
    x = np.zeros((2, 1), np.float32)
    raises("Meta.adapt: task is not a Task (got None)", lambda: meta.adapt(None))
    raises("Meta.adapt: task is not a Task (got list)", lambda: meta.adapt(tasks))
    raises("Meta.adapt: out_prompt is not a Prompt or None (got Model)",
           lambda: meta.adapt(tasks[0], out_prompt=model))
    raises("Meta.adapt: out_model is not a Model or None (got Prompt)",
           lambda: meta.adapt(tasks[0], out_model=prompt))
    raises("Meta.evaluate: sampler is not a Sampler (got Task)", lambda: meta.evaluate(tasks[0], 0, 1))
    raises("Meta: model is not a Model (got None)", lambda: mp.Meta(None, prompt, cfg))
    raises("Meta: prompt is not a Prompt or None (got Model)", lambda: mp.Meta(model, model, cfg))
    raises("Prompt: model is not a Model (got int)", lambda: mp.Prompt(3))
    raises("Prompt.init_from_data: model is not a Model (got Prompt)", lambda: prompt.init_from_data(prompt, x))
    raises("Prompt.copy_from: src is not a Prompt (got None)", lambda: prompt.copy_from(None))
    raises("Model.predict: prompt is not a Prompt or None (got Model)", lambda: model.predict(x, prompt=model))
    raises("Model.loss: prompt is not a Prompt or None (got int)", lambda: model.loss(x, targets=x, prompt=1))
    raises("Sampler: dataset is not a Dataset (got Sampler)", lambda: mp.Sampler(sampler))
    raises("Sampler.episode_into: task is not a Task (got None)", lambda: sampler.episode_into(0, None))
    path = str(tmp_path / "c.mpck")
    raises("checkpoint_save: model is not a Model (got Prompt)", lambda: mp.checkpoint_save(path, prompt))
    raises("checkpoint_save: meta is not a Meta or None (got Sampler)",
           lambda: mp.checkpoint_save(path, model, prompt, meta=sampler))
    raises("checkpoint_save: sampler is not a Sampler or None (got int)",
           lambda: mp.checkpoint_save(path, model, prompt, meta, sampler=0))
    assert not (tmp_path / "c.mpck").exists()
    mp.checkpoint_save(path, model, prompt, meta, sampler)
    raises("checkpoint_load: prompt is not a Prompt or None (got Meta)",
           lambda: mp.checkpoint_load(path, model, meta))
    raises("checkpoint_load: sampler is not a Sampler or None (got Task)",
           lambda: mp.checkpoint_load(path, model, prompt, meta, sampler=tasks[0]))
    # the right handles still work; None stays allowed where it was
    mp.checkpoint_load(path, model, prompt, meta, sampler)
    adapted = meta.adapt(tasks[0])
    assert adapted.shape == prompt.shape
    adapted.close()
    assert model.predict(x, prompt=None).shape == (2, 1)


def test_closed_handle_in_a_list_is_still_reported():
    """A closed Task is a Task: its .ptr raises MetapromptError(ERR_STATE) as
    for any closed handle."""
    cfg = mp.Config({mp.CFG_MODEL_PROMPT_LEN: 2, mp.CFG_DATA_SHOTS: 2, mp.CFG_DATA_QUERIES: 2})
    with mp.Model(cfg) as model, mp.Prompt(model) as prompt, mp.Meta(model, prompt, cfg) as meta:
        s = mp.Sampler.sinusoid(cfg)
        t = s.next()
        t.close()
        with pytest.raises(mp.MetapromptError, match=re.escape("Task: handle is closed")):
            meta.step([t])
        s.close()
