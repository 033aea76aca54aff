import numpy as np
import pytest

import metaprompt as mp
from conftest import requires

pytestmark = requires("mp_model_create", "mp_prompt_create", "mp_checkpoint_save")


def small_mlp(prompt_len=2):
    return mp.Model({mp.CFG_MODEL_INPUT_DIM: 3, mp.CFG_MODEL_OUTPUT_DIM: 2,
                     mp.CFG_MODEL_HIDDEN_WIDTH: 8, mp.CFG_MODEL_PROMPT_LEN: prompt_len,
                     mp.CFG_MODEL_TASK: mp.TASK_CLASSIFICATION, mp.CFG_SEED: 1})


def test_model_params_predict_loss(no_leaks):
    with small_mlp() as m, mp.Prompt(m) as p:
        assert m.input_dim == 3 and m.output_dim == 2
        assert m.prompt_shape == p.shape and p.shape[0] == 2
        n = m.num_params
        w = m.get_params()
        assert w.shape == (n,) and w.dtype == np.float32
        x = np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3)
        out = m.predict(x, p)
        assert out.shape == (4, 2)
        np.testing.assert_array_equal(m.predict(x), out)   # None = zero prompt = new prompt
        buf = np.empty(8, np.float32)
        assert m.predict(x, p, out=buf) is buf
        loss = m.loss(x, labels=[0, 1, 1, 0], prompt=p)
        logp = out - np.log(np.exp(out).sum(1, keepdims=True))
        assert abs(loss - (-logp[[0, 1, 2, 3], [0, 1, 1, 0]].mean())) < 1e-4
        m.set_params(np.zeros(n))
        assert not m.get_params().any()
        c = m.clone()
        m.set_params(w)
        assert not c.get_params().any()
        c.close()


def test_prompt_values():
    with small_mlp(prompt_len=3) as m, mp.Prompt(m) as p:
        assert not p.get().any()
        p.init(mp.PROMPT_INIT_NORMAL, 0.5, seed=4)
        v = p.get()
        assert v.shape == p.shape and v.std() > 0.1
        q = mp.Prompt(m).copy_from(p)
        np.testing.assert_array_equal(q.get(), v)
        p.set(np.ones(p.shape))
        assert (p.get() == 1).all()
        p.init_from_data(m, np.ones((5, 3)))
        with pytest.raises(ValueError) as ei:
            p.set(np.ones(5))
        assert str(ei.value) == "Prompt.set: values must have shape (3, 3) or (9,), got (5,)"
        with pytest.raises(mp.MetapromptError) as ei:
            p.set(np.full(p.shape, np.nan))
        assert ei.value.status == mp.ERR_NOT_FINITE
        np.testing.assert_array_equal(p.get(), np.ones(p.shape) * p.get()[0, 0])  # unchanged


def test_model_errors():
    with pytest.raises(mp.MetapromptError) as ei:
        mp.Model({mp.CFG_MODEL_KIND: mp.MODEL_TRANSFORMER, mp.CFG_MODEL_D_MODEL: 30,
                  mp.CFG_MODEL_HEADS: 4})
    assert ei.value.status == mp.ERR_INVALID_ARGUMENT
    with small_mlp() as m:
        with pytest.raises(ValueError):
            m.predict(np.zeros(5))
        with pytest.raises(mp.MetapromptError) as ei:
            m.loss(np.zeros((1, 3)), labels=[7])
        assert ei.value.status == mp.ERR_RANGE
        with pytest.raises(mp.MetapromptError) as ei:
            m.set_params(np.zeros(3))
        assert ei.value.status == mp.ERR_SHAPE_MISMATCH


def test_checkpoint_roundtrip(tmp_path):
    path = tmp_path / "m.ckpt"
    with small_mlp() as m, mp.Prompt(m) as p:
        p.init(mp.PROMPT_INIT_UNIFORM, 1.0, seed=2)
        mp.checkpoint_save(path, m, p)
        m2 = mp.Model.from_checkpoint(path)
        np.testing.assert_array_equal(m2.get_params(), m.get_params())
        p2 = mp.Prompt(m2)
        mp.checkpoint_load(path, m2, p2)
        np.testing.assert_array_equal(p2.get(), p.get())
        with pytest.raises(mp.MetapromptError) as ei:
            mp.checkpoint_load(tmp_path / "missing", m2)
        assert ei.value.status == mp.ERR_IO
        path.write_bytes(b"not a checkpoint at all")
        with pytest.raises(mp.MetapromptError) as ei:
            mp.checkpoint_load(path, m2)
        assert ei.value.status == mp.ERR_FORMAT


def test_embedded_null_bytes_are_refused(tmp_path):
    """A NUL inside a path or key name would end the C string early and act on
    another file or key; like open(), the binding raises ValueError naming
    the argument, and nothing is written."""
    target = tmp_path / "target"
    with small_mlp() as m:
        with pytest.raises(ValueError, match=r"checkpoint_save: path: embedded null byte"):
            mp.checkpoint_save(str(target) + "\0.bak", m)
        assert not target.exists()
        with pytest.raises(ValueError, match=r"Model.from_checkpoint: path"):
            mp.Model.from_checkpoint(str(target) + "\0x")
        with pytest.raises(ValueError, match=r"Dataset.load_csv: path"):
            mp.Dataset.load_csv(str(tmp_path / "x.csv") + "\0zzz")
        with pytest.raises(ValueError, match=r"Dataset.load_idx: labels_path"):
            mp.Dataset.load_idx(str(tmp_path / "i"), b"l\0")
        with pytest.raises(ValueError, match=r"key_by_name: name: embedded null byte"):
            mp.Config({"meta.inner_steps\0junk": 3})


def test_loss_refuses_non_finite_targets():
    with mp.Model({mp.CFG_MODEL_INPUT_DIM: 1, mp.CFG_MODEL_OUTPUT_DIM: 1,
                   mp.CFG_MODEL_TASK: mp.TASK_REGRESSION}) as m:
        x = np.zeros((3, 1), np.float32)
        assert np.isfinite(m.loss(x, targets=np.zeros((3, 1))))
        for bad in (np.nan, np.inf):
            with pytest.raises(mp.MetapromptError, match=r"targets\[1\] is not finite") as ei:
                m.loss(x, targets=np.array([[0.0], [bad], [0.0]]))
            assert ei.value.status == mp.ERR_NOT_FINITE
