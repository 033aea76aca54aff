"""The shape checks in front of C calls that take counts instead of buffer
lengths (metaprompt._base.shaped and the wrappers using it): a wrong length
must be a ValueError naming the argument, the expected and the received
shape, never an out-of-bounds read; an array that already fits is passed to
C as is (no copy)."""
import ctypes

import numpy as np
import pytest

import metaprompt
from metaprompt import _base, data as mp_data, model as mp_model
from metaprompt._base import as_i32, shaped


def message(excinfo):
    return str(excinfo.value)


# ---- shaped() itself ---------------------------------------------------------
def test_exact_and_named_axes():
    a = np.zeros((4, 3), np.float32)
    assert shaped(a, "x", 4, 3) is a
    assert shaped(a, "x", "n", 3) is a
    assert shaped(a, "x", "n", "dim") is a
    with pytest.raises(ValueError) as e:
        shaped(a, "Foo.bar: x", "n", 5)
    assert message(e) == "Foo.bar: x must have shape (n, 5), got (4, 3)"
    with pytest.raises(ValueError) as e:
        shaped(a, "Foo.bar: x", 3, "dim")
    assert message(e) == "Foo.bar: x must have shape (3, dim), got (4, 3)"


def test_axis_count_is_checked():
    with pytest.raises(ValueError) as e:
        shaped(np.zeros((2, 2, 2), np.float32), "x", "n", "dim")
    assert message(e) == "x must have shape (n, dim), got (2, 2, 2)"
    with pytest.raises(ValueError) as e:
        shaped(np.zeros(4, np.float32), "x", "n", 4)
    assert message(e) == "x must have shape (n, 4), got (4,)"


def test_one_axis_message_and_match():
    lab = np.arange(5, dtype=np.int32)
    assert shaped(lab, "labels", 5, conv=as_i32) is lab
    with pytest.raises(ValueError) as e:
        shaped(lab, "Model.loss: labels", 4, conv=as_i32)
    assert message(e) == "Model.loss: labels must have shape (4,), got (5,)"


def test_ellipsis_takes_further_axes():
    a = np.zeros((2, 3, 4), np.float32)
    assert shaped(a, "x", "n", "dim", ...) is a
    assert shaped(a[0], "x", "n", "dim", ...).shape == (3, 4)
    with pytest.raises(ValueError) as e:
        shaped(np.zeros(3, np.float32), "x", "n", "dim", ...)
    assert message(e) == "x must have shape (n, dim, ...), got (3,)"


def test_flat_accepts_one_value_per_row():
    y = np.arange(5, dtype=np.float32)
    for width in (1, "target_dim"):
        out = shaped(y, "y", 5, width, flat=True)
        assert out.shape == (5, 1)
        assert np.shares_memory(out, y)          # a view, not a copy
    # A (n, 1) array is taken as is.
    col = y.reshape(5, 1)
    assert shaped(col, "y", 5, 1, flat=True) is col
    # A width other than 1 does not take a 1-D array; the message lists what
    # would have been accepted.
    with pytest.raises(ValueError) as e:
        shaped(y, "y", 5, 2, flat=True)
    assert message(e) == "y must have shape (5, 2), got (5,)"
    with pytest.raises(ValueError) as e:
        shaped(np.arange(4, dtype=np.float32), "y", 5, 1, flat=True)
    assert message(e) == "y must have shape (5, 1) or (5,), got (4,)"


def test_flat_on_one_axis_shape_is_harmless():
    # Used to raise IndexError (want[1] of a one-axis shape).
    v = np.arange(3, dtype=np.float32)
    assert shaped(v, "v", 3, flat=True) is v
    assert shaped(v, "v", "n", flat=True) is v
    with pytest.raises(ValueError) as e:
        shaped(v, "v", 4, flat=True)
    assert message(e) == "v must have shape (4,), got (3,)"
    # ... and with trailing axes: flat changes nothing there either.
    with pytest.raises(ValueError):
        shaped(v, "v", "n", 2, ..., flat=True)


def test_no_copy_when_the_array_already_fits():
    a = np.arange(12, dtype=np.float32).reshape(4, 3)
    out = shaped(a, "x", "n", 3)
    assert np.shares_memory(out, a) and out.ctypes.data == a.ctypes.data
    i = np.arange(4, dtype=np.int32)
    out = shaped(i, "labels", 4, conv=as_i32)
    assert out.ctypes.data == i.ctypes.data
    # The control: other dtypes and non-contiguous arrays are copied.
    assert not np.shares_memory(shaped(a.astype(np.float64), "x", "n", 3), a)
    strided = np.arange(24, dtype=np.float32).reshape(4, 6)[:, ::2]
    out = shaped(strided, "x", "n", 3)
    assert out.flags.c_contiguous and not np.shares_memory(out, strided)
    np.testing.assert_array_equal(out, strided)


def test_labels_must_be_integers():
    with pytest.raises(TypeError):
        shaped(np.array([0.0, 1.5]), "labels", 2, conv=as_i32)


# ---- the wrappers: wrong label/target lengths never reach C -----------------
def test_dataset_rejects_wrong_labels_and_targets():
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError) as e:
        metaprompt.Dataset(x, labels=[0, 1, 0])
    assert message(e) == "Dataset: labels must have shape (4,), got (3,)"
    with pytest.raises(ValueError) as e:
        metaprompt.Dataset(x, labels=np.zeros((4, 1), np.int32))
    assert "Dataset: labels" in message(e) and "(4, 1)" in message(e)
    with pytest.raises(ValueError) as e:
        metaprompt.Dataset(x, targets=np.zeros(5, np.float32))
    assert message(e) == "Dataset: targets must have shape (4, target_dim) or (4,), got (5,)"
    with pytest.raises(ValueError) as e:
        metaprompt.Dataset(x, targets=np.zeros((3, 2), np.float32))
    assert "Dataset: targets" in message(e) and "got (3, 2)" in message(e)
    assert len(metaprompt.Dataset(x, targets=np.zeros(4, np.float32))) == 4


@pytest.fixture
def classifier():
    with metaprompt.Model({mp_model.CFG_MODEL_INPUT_DIM: 3, mp_model.CFG_MODEL_OUTPUT_DIM: 2,
                           mp_model.CFG_MODEL_TASK: mp_model.TASK_CLASSIFICATION}) as m:
        yield m


def test_model_loss_rejects_wrong_lengths(classifier):
    x = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError) as e:
        classifier.loss(x, labels=[0, 1])
    assert message(e) == "Model.loss: labels must have shape (4,), got (2,)"
    with pytest.raises(ValueError) as e:
        classifier.loss(np.zeros((4, 2), np.float32), labels=[0, 1, 0, 1])
    assert message(e) == "Model.loss: x must have shape (n, 3), got (4, 2)"
    with metaprompt.Model() as reg:                    # 1 -> 1 regressor
        xr = np.zeros((100, 1), np.float32)
        with pytest.raises(ValueError) as e:
            reg.loss(xr, targets=[1.0])
        assert message(e) == "Model.loss: targets must have shape (100, 1) or (100,), got (1,)"
        assert np.isfinite(reg.loss(xr, targets=np.zeros(100, np.float32)))


def test_task_classification_rejects_wrong_lengths():
    sx, qx = np.zeros((2, 3), np.float32), np.zeros((3, 3), np.float32)
    with pytest.raises(ValueError) as e:
        metaprompt.Task.classification(sx, [0], qx, [0, 1, 0])
    assert message(e) == "Task.classification: support_labels must have shape (2,), got (1,)"
    with pytest.raises(ValueError) as e:
        metaprompt.Task.classification(sx, [0, 1], qx, [0, 1, 0, 1])
    assert message(e) == "Task.classification: query_labels must have shape (3,), got (4,)"
    with pytest.raises(ValueError) as e:
        metaprompt.Task.classification(sx, [0, 1], np.zeros((3, 2), np.float32), [0, 1, 0])
    assert message(e) == "Task.classification: query_x must have shape (n_query, 3), got (3, 2)"
    with metaprompt.Task.classification(sx, [0, 1], qx, [0, 1, 0]) as t:
        assert t.sizes() == (2, 3, 3, 2, 0)


def test_task_regression_rejects_wrong_lengths():
    sx, qx = np.zeros(5, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError) as e:
        metaprompt.Task.regression(sx, np.zeros(4, np.float32), qx, np.zeros(4, np.float32))
    assert message(e) == "Task.regression: support_y must have shape (5, target_dim) or (5,), got (4,)"
    with pytest.raises(ValueError) as e:
        metaprompt.Task.regression(sx, np.zeros(5, np.float32), qx, np.zeros((4, 2), np.float32))
    assert message(e) == "Task.regression: query_y must have shape (4, 1) or (4,), got (4, 2)"
    with pytest.raises(ValueError) as e:
        metaprompt.Task.regression(np.zeros((5, 2), np.float32), np.zeros(5, np.float32), qx,
                                   np.zeros(4, np.float32))
    assert message(e) == "Task.regression: query_x must have shape (n_query, 2), got (4,)"
    with metaprompt.Task.regression(sx, np.zeros(5, np.float32), qx, np.zeros(4, np.float32)) as t:
        assert t.sizes() == (5, 4, 1, 0, 1)


# ---- no copy on the way to C -------------------------------------------------
class Recorder:
    """Stands in for the ctypes library object of one wrapper module:
    records the addresses of the pointer arguments of one function, then
    calls the real one."""

    def __init__(self, real, name):
        self.real, self.name, self.addresses = real, name, []

    def __getattr__(self, attr):
        fn = getattr(self.real, attr)
        if attr != self.name:
            return fn

        def call(*args):
            self.addresses.append([ctypes.cast(a, ctypes.c_void_p).value
                                   if isinstance(a, ctypes._Pointer) else None for a in args])
            return fn(*args)
        return call


def test_model_loss_passes_fitting_arrays_without_copy(monkeypatch):
    rec = Recorder(mp_model.F, "mp_model_loss")
    monkeypatch.setattr(mp_model, "F", rec)
    with metaprompt.Model() as reg:
        x = np.linspace(-1, 1, 10, dtype=np.float32).reshape(10, 1)
        y = np.linspace(0, 1, 10, dtype=np.float32)
        reg.loss(x, targets=y)
        # x is argument 2, targets argument 6 of mp_model_loss.
        assert rec.addresses[-1][2] == x.ctypes.data
        assert rec.addresses[-1][6] == y.ctypes.data
        reg.loss(x.astype(np.float64), targets=y)          # the control: a copy
        assert rec.addresses[-1][2] != x.ctypes.data


def test_task_creation_passes_fitting_arrays_without_copy(monkeypatch):
    rec = Recorder(mp_data.F, "mp_task_create_classification")
    monkeypatch.setattr(mp_data, "F", rec)
    sx, qx = np.ones((2, 3), np.float32), np.ones((1, 3), np.float32)
    sl, ql = np.array([0, 1], np.int32), np.array([1], np.int32)
    metaprompt.Task.classification(sx, sl, qx, ql).close()
    got = rec.addresses[-1]
    assert got[3:5] == [sx.ctypes.data, sl.ctypes.data]
    assert got[6:8] == [qx.ctypes.data, ql.ctypes.data]


def test_wrappers_call_through_their_module_F():
    # Guards the monkeypatching above: the wrappers call through module F.
    assert mp_model.F is _base.F and mp_data.F is _base.F
