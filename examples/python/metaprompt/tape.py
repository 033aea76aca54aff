"""tape.h: the autodiff tape (advanced API).

Variables are plain ints (opaque mp_var ids) valid on the tape that made
them until reset() or close(); an id from before reset() or from another
tape raises MetapromptError (ERR_UNKNOWN_VARIABLE). Values come back as float32 numpy arrays of shape
(rows, cols).
"""
import ctypes

import numpy as np

from metaprompt._lib import F
from metaprompt._base import Handle, check, as_f32, as_i32, fptr, iptr, out_f32

__all__ = ["Tape", "VAR_NONE", "LEAF_REQUIRES_GRAD", "LEAF_BORROW", "REDUCE_ALL", "REDUCE_PER_ROW",
           "REDUCE_PER_COL", "AXIS_ROWS", "AXIS_COLS", "TAPE_STAT_NODES", "TAPE_STAT_ARENA_USED",
           "TAPE_STAT_ARENA_HIGH", "TAPE_STAT_HEAP_BYTES"]

VAR_NONE = -1
LEAF_REQUIRES_GRAD = 1
LEAF_BORROW = 2
REDUCE_ALL, REDUCE_PER_ROW, REDUCE_PER_COL = 0, 1, 2
AXIS_ROWS, AXIS_COLS = 0, 1
TAPE_STAT_NODES, TAPE_STAT_ARENA_USED, TAPE_STAT_ARENA_HIGH, TAPE_STAT_HEAP_BYTES = 0, 1, 2, 3

_STAT_NAMES = {"nodes": TAPE_STAT_NODES, "arena_used": TAPE_STAT_ARENA_USED,
               "arena_high": TAPE_STAT_ARENA_HIGH, "heap_bytes": TAPE_STAT_HEAP_BYTES}


def _v(x):
    """A variable id from an int or None (-> MP_VAR_NONE)."""
    return VAR_NONE if x is None else int(x)


def _shape2(arr, shape):
    if shape is not None:
        return int(shape[0]), int(shape[1])
    if arr.ndim == 0:
        return 1, 1
    if arr.ndim == 1:
        return 1, arr.shape[0]
    if arr.ndim == 2:
        return arr.shape
    raise ValueError("leaf: expected a scalar, vector or 2-D array, got shape %s (pass shape=)"
                     % (arr.shape,))


class Tape(Handle):
    """An autodiff tape (mp_tape). Not thread-safe; distinct tapes may be
    used from distinct threads (ctypes releases the GIL during calls)."""

    _destroy_fn = "mp_tape_destroy"
    _error_fn = "mp_tape_error"

    def __init__(self):
        out = ctypes.c_void_p()
        check(F.mp_tape_create(ctypes.byref(out)))
        Handle.__init__(self, out.value)
        self._borrowed = []

    def close(self):
        Handle.close(self)
        self._borrowed = []

    def _op(self, fn, *args):
        out = ctypes.c_int32()
        self._check(fn(self.ptr, *args, ctypes.byref(out)))
        return out.value

    # ---- lifetime and statistics
    def reset(self):
        """Forgets every variable; arena memory is kept for reuse."""
        self._check(F.mp_tape_reset(self.ptr))
        self._borrowed = []

    def stat(self, which):
        """One statistic: TAPE_STAT_* or "nodes", "arena_used", "arena_high",
        "heap_bytes"."""
        out = ctypes.c_int64()
        self._check(F.mp_tape_stat(self.ptr, _STAT_NAMES.get(which, which), ctypes.byref(out)))
        return out.value

    # ---- leaves and reading
    def leaf(self, data, shape=None, requires_grad=False, borrow=False):
        """A leaf from an array (scalar -> 1x1, vector -> 1xn, 2-D as is,
        or any array with shape=(rows, cols)). Copied by the library unless
        borrow=True: then data must already be C-contiguous float32 and the
        tape keeps a reference to it until reset()/close() (do not modify
        it meanwhile)."""
        if borrow:
            if not (isinstance(data, np.ndarray) and data.dtype == np.float32
                    and data.flags.c_contiguous):
                raise TypeError("leaf(borrow=True) needs a C-contiguous float32 numpy array")
            arr = data
        else:
            arr = as_f32(data)
        rows, cols = _shape2(arr, shape)
        flags = (LEAF_REQUIRES_GRAD if requires_grad else 0) | (LEAF_BORROW if borrow else 0)
        v = self._op(F.mp_tape_leaf, rows, cols, fptr(arr), arr.size, flags)
        if borrow:
            self._borrowed.append(arr)
        return v

    def fill(self, rows, cols, value):
        """A constant rows x cols leaf filled with value."""
        return self._op(F.mp_tape_fill, rows, cols, float(value))

    def shape(self, v):
        r, c = ctypes.c_int32(), ctypes.c_int32()
        self._check(F.mp_tape_shape(self.ptr, _v(v), ctypes.byref(r), ctypes.byref(c)))
        return r.value, c.value

    def read(self, v, out=None):
        """Values of v as a (rows, cols) float32 array (written into `out`
        when given)."""
        shape = self.shape(v)
        buf = out_f32(shape, out)
        self._check(F.mp_tape_read(self.ptr, _v(v), fptr(buf), buf.size))
        return buf if out is not None else buf.reshape(shape)

    def scalar(self, v):
        out = ctypes.c_float()
        self._check(F.mp_tape_scalar(self.ptr, _v(v), ctypes.byref(out)))
        return out.value

    # ---- differentiation
    def backward(self, loss, create_graph=False):
        """Reverse sweep from a 1x1 loss; create_graph=True makes the
        gradients differentiable (higher order)."""
        self._check(F.mp_tape_backward(self.ptr, _v(loss), 1 if create_graph else 0))

    def backward_wrt(self, loss, wrt, create_graph=False):
        """Like backward() but only along paths from the variables in wrt
        (like torch.autograd.grad(loss, wrt)); other gradients read zero."""
        ids = as_i32([_v(w) for w in wrt], "Tape.backward_wrt: wrt").reshape(-1)
        self._check(F.mp_tape_backward_wrt(self.ptr, _v(loss), 1 if create_graph else 0, iptr(ids), ids.size))

    def grad(self, v):
        """Gradient variable of v from the last backward()."""
        return self._op(F.mp_tape_grad, _v(v))

    # ---- ops
    def matmul(self, a, b, trans_a=False, trans_b=False):
        return self._op(F.mp_matmul, _v(a), _v(b), int(bool(trans_a)), int(bool(trans_b)))

    def add(self, a, b):
        return self._op(F.mp_add, _v(a), _v(b))

    def sub(self, a, b):
        return self._op(F.mp_sub, _v(a), _v(b))

    def mul(self, a, b):
        return self._op(F.mp_mul, _v(a), _v(b))

    def div(self, a, b):
        return self._op(F.mp_div, _v(a), _v(b))

    def scale(self, a, s):
        return self._op(F.mp_scale, _v(a), float(s))

    def add_scalar(self, a, s):
        return self._op(F.mp_add_scalar, _v(a), float(s))

    def sum(self, a, reduce=REDUCE_ALL):
        return self._op(F.mp_sum, _v(a), int(reduce))

    def mean(self, a, reduce=REDUCE_ALL):
        return self._op(F.mp_mean, _v(a), int(reduce))

    def relu(self, a):
        return self._op(F.mp_relu, _v(a))

    def tanh(self, a):
        return self._op(F.mp_tanh, _v(a))

    def sigmoid(self, a):
        return self._op(F.mp_sigmoid, _v(a))

    def gelu(self, a):
        return self._op(F.mp_gelu, _v(a))

    def exp(self, a):
        return self._op(F.mp_exp, _v(a))

    def log(self, a):
        return self._op(F.mp_log, _v(a))

    def sqrt(self, a):
        return self._op(F.mp_sqrt, _v(a))

    def square(self, a):
        return self._op(F.mp_square, _v(a))

    def softmax(self, a):
        return self._op(F.mp_softmax, _v(a))

    def log_softmax(self, a):
        return self._op(F.mp_log_softmax, _v(a))

    def cross_entropy(self, logits, labels):
        """Mean cross-entropy of logits (rows x classes) against integer
        labels (one per row). -> 1x1"""
        lab = as_i32(labels, "Tape.cross_entropy: labels").reshape(-1)
        return self._op(F.mp_cross_entropy, _v(logits), iptr(lab), lab.size)

    def mse(self, pred, target):
        return self._op(F.mp_mse, _v(pred), _v(target))

    def layer_norm(self, x, gamma=None, beta=None, eps=1e-5):
        return self._op(F.mp_layer_norm, _v(x), _v(gamma), _v(beta), float(eps))

    def gather_rows(self, table, idx):
        ix = as_i32(idx, "Tape.gather_rows: idx").reshape(-1)
        return self._op(F.mp_gather_rows, _v(table), iptr(ix), ix.size)

    def concat(self, a, b, axis=AXIS_ROWS):
        return self._op(F.mp_concat, _v(a), _v(b), int(axis))

    def slice(self, a, axis, start, length):
        return self._op(F.mp_slice, _v(a), int(axis), int(start), int(length))

    def reshape(self, a, rows, cols):
        return self._op(F.mp_reshape, _v(a), int(rows), int(cols))

    def transpose(self, a):
        return self._op(F.mp_transpose, _v(a))

    def conv2d(self, x, w, bias, channels, height, width, kernel, stride=1, pad=0):
        """x: N x (C*H*W); w: F x (C*k*k); bias: 1 x F or None."""
        return self._op(F.mp_conv2d, _v(x), _v(w), _v(bias), int(channels), int(height),
                        int(width), int(kernel), int(stride), int(pad))

    def maxpool2d(self, x, channels, height, width):
        return self._op(F.mp_maxpool2d, _v(x), int(channels), int(height), int(width))

    def batch_matmul(self, a, b, batch, trans_a=False, trans_b=False):
        return self._op(F.mp_batch_matmul, _v(a), _v(b), int(batch), int(bool(trans_a)),
                        int(bool(trans_b)))

    def split_heads(self, x, batch, seq, heads):
        return self._op(F.mp_split_heads, _v(x), int(batch), int(seq), int(heads))

    def merge_heads(self, x, batch, seq, heads):
        return self._op(F.mp_merge_heads, _v(x), int(batch), int(seq), int(heads))
