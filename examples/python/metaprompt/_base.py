"""Errors, handle lifetime and numpy conversions shared by every wrapper."""
import ctypes
import numbers
import operator
import os

import numpy as np

from metaprompt._lib import F

__all__ = ["MetapromptError", "STATUS_NAMES", "OK"]  # + every ERR_* (below)

# Status codes (core.h; pinned forever, append only).
OK = 0
ERR_INVALID_ARGUMENT = 1
ERR_NULL_POINTER = 2
ERR_OUT_OF_MEMORY = 3
ERR_BUFFER_TOO_SMALL = 4
ERR_SHAPE_MISMATCH = 5
ERR_UNKNOWN_VARIABLE = 6
ERR_IO = 7
ERR_FORMAT = 8
ERR_VERSION = 9
ERR_CHECKSUM = 10
ERR_NOT_FINITE = 11
ERR_STATE = 12
ERR_CANCELLED = 13
ERR_NOT_FOUND = 14
ERR_RANGE = 15
ERR_UNSUPPORTED = 16
ERR_INTERNAL = 17

__all__ += [n for n in list(globals()) if n.startswith("ERR_")]

STATUS_NAMES = {
    OK: "MP_OK", ERR_INVALID_ARGUMENT: "MP_ERR_INVALID_ARGUMENT",
    ERR_NULL_POINTER: "MP_ERR_NULL_POINTER", ERR_OUT_OF_MEMORY: "MP_ERR_OUT_OF_MEMORY",
    ERR_BUFFER_TOO_SMALL: "MP_ERR_BUFFER_TOO_SMALL", ERR_SHAPE_MISMATCH: "MP_ERR_SHAPE_MISMATCH",
    ERR_UNKNOWN_VARIABLE: "MP_ERR_UNKNOWN_VARIABLE", ERR_IO: "MP_ERR_IO",
    ERR_FORMAT: "MP_ERR_FORMAT", ERR_VERSION: "MP_ERR_VERSION", ERR_CHECKSUM: "MP_ERR_CHECKSUM",
    ERR_NOT_FINITE: "MP_ERR_NOT_FINITE", ERR_STATE: "MP_ERR_STATE",
    ERR_CANCELLED: "MP_ERR_CANCELLED", ERR_NOT_FOUND: "MP_ERR_NOT_FOUND",
    ERR_RANGE: "MP_ERR_RANGE", ERR_UNSUPPORTED: "MP_ERR_UNSUPPORTED",
    ERR_INTERNAL: "MP_ERR_INTERNAL",
}


def _text(b):
    return b.decode("utf-8", "replace") if b else ""


class MetapromptError(Exception):
    """A libmetaprompt call failed.

    .status       the mp_status code (int)
    .status_name  its constant name ("MP_ERR_RANGE")
    .message      the library's message (names function, argument, expected
                  vs. received)
    """

    def __init__(self, status, message):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, "MP_STATUS_%d" % self.status)
        self.message = message
        super().__init__("%s: %s" % (self.status_name, message))


def check(st, handle=None):
    """Raises MetapromptError for a non-zero status. The message is the
    calling thread's mp_last_error(), which every failing call writes (const
    calls, e.g. a sampler's episode(), write only that one, so a handle's
    mp_<type>_error() could be stale); the handle's message is the fallback."""
    if st == OK:
        return
    msg = _text(F.mp_last_error())
    if not msg and handle is not None and handle.__dict__.get("_ptr"):
        msg = _text(getattr(F, handle._error_fn)(handle._ptr))
    if not msg:
        msg = _text(F.mp_status_string(st))
    raise MetapromptError(st, msg)


class Handle:
    """An owned C handle. Freed by close(), by leaving a `with` block, or when
    garbage-collected. `_owners` are handles this one borrows in C (e.g. a
    sampler's dataset): they stay alive as long as this handle, and closing
    an owner that is still borrowed only marks it closed; its C object is
    destroyed when the last borrower goes, so C never sees a dangling
    pointer."""

    _destroy_fn = None  # name of mp_<type>_destroy
    _error_fn = None    # name of mp_<type>_error

    def __init__(self, ptr, owners=()):
        self._ptr = ptr
        self._borrowers = 0
        self._close_pending = False
        self._owners = tuple(o for o in owners if isinstance(o, Handle))
        for o in self._owners:
            o._borrowers += 1

    @classmethod
    def _create(cls, fn, *args, owners=()):
        """Calls fn(&out, *args) and wraps the result."""
        out = ctypes.c_void_p()
        check(fn(ctypes.byref(out), *args))
        return cls._wrap(out.value, owners)

    @classmethod
    def _wrap(cls, ptr, owners=()):
        """Takes ownership of a pointer a C function created."""
        obj = cls.__new__(cls)
        Handle.__init__(obj, ptr, owners)
        return obj

    @property
    def ptr(self):
        """The raw C pointer (int); raises if the handle was closed."""
        if self.closed:
            raise MetapromptError(ERR_STATE, "%s: handle is closed" % type(self).__name__)
        return self._ptr

    @property
    def closed(self):
        d = self.__dict__
        return not d.get("_ptr") or d.get("_close_pending", False)

    def error(self):
        """The handle's last error message ("" if none)."""
        return _text(getattr(F, self._error_fn)(self.ptr))

    def _check(self, st):
        check(st, self)

    def close(self):
        """Destroys the C object now (or, while another handle still borrows
        it, as soon as that one is closed); later calls raise
        MetapromptError(ERR_STATE)."""
        d = self.__dict__
        p = d.get("_ptr")
        if not p:
            return
        if d.get("_borrowers", 0) > 0:
            self._close_pending = True
            return
        self._ptr = None
        self._close_pending = False
        getattr(F, self._destroy_fn)(p)
        owners, self._owners = d.get("_owners", ()), ()
        for o in owners:
            o._release()

    def _release(self):
        self._borrowers -= 1
        if self._borrowers == 0 and self._close_pending:
            self._close_pending = False
            self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # At interpreter exit module globals may be gone; never raise here.
        try:
            self.close()
        except Exception:
            pass


def _got(obj):
    return "None" if obj is None else type(obj).__name__


def handle_ptr(obj, cls, name, optional=False):
    """The C pointer of a handle argument: obj must be a `cls` (None too when
    optional, giving NULL). Anything else raises TypeError naming the
    argument `name` (e.g. "Meta.adapt: task"), the expected class and what
    was received, instead of an AttributeError on .ptr or a crash in C."""
    if obj is None and optional:
        return None
    if not isinstance(obj, cls):
        raise TypeError("%s is not a %s%s (got %s)"
                        % (name, cls.__name__, " or None" if optional else "", _got(obj)))
    return obj.ptr


def c_path(path, name):
    """The bytes of a path (str, bytes or os.PathLike) for a C string
    argument. An embedded NUL would end the C string early, so the library
    would act on another file: ValueError naming the argument, as Python's
    own open() does."""
    b = os.fsencode(path)
    if b"\0" in b:
        raise ValueError("%s: embedded null byte in %r" % (name, path))
    return b


def c_name(text, name):
    """The UTF-8 bytes of a name (a configuration key) for a C string
    argument; ValueError for an embedded NUL, which would name another key."""
    b = text.encode()
    if b"\0" in b:
        raise ValueError("%s: embedded null byte in %r" % (name, text))
    return b


def handle_array(objs, cls, name):
    """A ctypes array of the C pointers of a sequence of handles (at least
    one slot, so that it is never a NULL array) and its length. A non-
    sequence, or an element that is not a `cls`, raises TypeError naming the
    argument and the element's index ("Meta.step: tasks[2] is not a Task
    (got None)")."""
    if isinstance(objs, Handle) or not hasattr(objs, "__iter__") or isinstance(objs, (str, bytes)):
        raise TypeError("%s must be a sequence of %s, got %s%s"
                        % (name, cls.__name__, _got(objs),
                           " (pass [%s])" % name.split(": ")[-1].rstrip("s")
                           if isinstance(objs, cls) else ""))
    objs = list(objs)
    ptrs = [handle_ptr(o, cls, "%s[%d]" % (name, i)) for i, o in enumerate(objs)]
    return (ctypes.c_void_p * max(len(ptrs), 1))(*ptrs), len(ptrs)


# ---- numpy in/out ------------------------------------------------------------
c_float_p = ctypes.POINTER(ctypes.c_float)
c_int32_p = ctypes.POINTER(ctypes.c_int32)


def as_f32(a, name=None):
    """A C-contiguous float32 view of a, copying only when a is not one.
    (name: the argument, for the interface shared with as_i32.)"""
    return np.ascontiguousarray(a, dtype=np.float32)


_I32_MIN, _I32_MAX = -(1 << 31), (1 << 31) - 1


def as_i32(a, name="array"):
    """A C-contiguous int32 view of a; integer arrays only (no silent
    truncation of floats) whose values fit in int32 (no silent wrapping:
    2**32 would become 0). Raises TypeError for a non-integer dtype and
    ValueError naming the argument, the index and the value for a value
    outside [-2**31, 2**31 - 1]."""
    arr = np.asarray(a)
    if arr.dtype.kind not in "iub" and arr.size:
        raise TypeError("%s: expected an integer array, got dtype %s" % (name, arr.dtype))
    if arr.size and arr.dtype.kind in "iu" and arr.dtype.itemsize * 8 > (32 if arr.dtype.kind == "i" else 31):
        bad = np.flatnonzero((arr < _I32_MIN) | (arr > _I32_MAX))
        if bad.size:
            i = np.unravel_index(bad[0], arr.shape)
            raise ValueError("%s: value %d at index %s is outside the int32 range [%d, %d]"
                             % (name, int(arr[i]), i[0] if len(i) == 1 else tuple(int(k) for k in i),
                                _I32_MIN, _I32_MAX))
    return np.ascontiguousarray(arr, dtype=np.int32)


def as_integer(value, name):
    """A Python int for an integer parameter: ints, numpy integers and
    integral floats of any kind (5.0, np.float32(5)); TypeError naming
    `name` for anything else (2.9, NaN, "3", None, True), where int() would
    truncate or parse. The C type's range is checked at the call."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError("%s is an integer; got %s %r" % (name, type(value).__name__, value))
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        f = float(value)
        if not f.is_integer():
            raise TypeError("%s is an integer; got %s %r" % (name, type(value).__name__, value))
        return int(f)
    try:
        return operator.index(value)
    except TypeError:
        raise TypeError("%s is an integer; got %s %r" % (name, type(value).__name__, value)) from None


def as_double(value, name):
    """A Python float for a double parameter: real numbers only (int,
    float, numpy scalars); TypeError naming `name` for strings, bools,
    arrays and None, which float() would parse or unwrap."""
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise TypeError("%s is a number; got %s %r" % (name, type(value).__name__, value))


def as_int64(value, name):
    """as_integer, in [-2**63, 2**63 - 1]; OverflowError naming `name`
    otherwise (ctypes would wrap 2**63 to a negative number and 2**70 to 0)."""
    v = as_integer(value, name)
    if not -(1 << 63) <= v <= (1 << 63) - 1:
        raise OverflowError("%s must be in the int64 range [%d, %d], got %d"
                            % (name, -(1 << 63), (1 << 63) - 1, v))
    return v


def shaped(a, name, *shape, conv=as_f32, flat=False):
    """conv(a) (as_f32 or as_i32: no copy when a already fits) after checking
    its shape. The C functions get no length for most arrays, so every
    wrapper checks here. In `shape` an int must match exactly, a str (the
    axis' name, for the message) matches any length and a final ... any
    further axes. flat=True also takes a 1-D array of n values for a
    two-axis (n, w) when w is 1 or free, returned as an (n, 1) view (for any
    other shape flat changes nothing). A mismatch raises ValueError naming
    the argument, the expected and the received shape."""
    arr = conv(a, name)
    rest = shape[-1:] == (Ellipsis,)
    want = shape[:-1] if rest else shape
    alts = [want]
    if flat and not rest and len(want) == 2 and (want[1] == 1 or isinstance(want[1], str)):
        alts.append(want[:1])
    for w in alts:
        if (arr.ndim == len(w) or rest and arr.ndim > len(w)) and all(
                isinstance(e, str) or e == g for e, g in zip(w, arr.shape)):
            return arr if w is want else arr.reshape(-1, 1)
    text = " or ".join("(%s%s)" % (", ".join(map(str, w + (("...",) if rest else ()))),
                                   "," if len(w) == 1 and not rest else "") for w in alts)
    raise ValueError("%s must have shape %s, got %s" % (name, text, arr.shape))


def fptr(arr):
    return arr.ctypes.data_as(c_float_p)


def iptr(arr):
    return arr.ctypes.data_as(c_int32_p)


def out_f32(shape, out=None):
    """A buffer to write into: the caller's `out` (must be C-contiguous
    float32 of the right size, written in place) or a new array."""
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if not (isinstance(out, np.ndarray) and out.dtype == np.float32
            and out.flags.c_contiguous and out.flags.writeable):
        raise TypeError("out must be a writeable C-contiguous float32 numpy array")
    if out.size != int(np.prod(shape)):
        raise ValueError("out has %d elements, %d needed" % (out.size, int(np.prod(shape))))
    return out
