"""Finding and loading the shared library, and the C prototypes.

The prototypes are written by hand from include/metaprompt/*.h (one entry
per MP_API function). tests/test_coverage.py checks that every MP_API
function of the headers has an entry here (or is listed in UNBOUND with a
reason) and is used by a wrapper, so the binding cannot silently fall
behind the headers.
"""
import ctypes
import ctypes.util
import numbers
import os
import subprocess

# The ABI major this binding is written against (the SONAME's number).
ABI_MAJOR = 0

c_float_p = ctypes.POINTER(ctypes.c_float)
c_double_p = ctypes.POINTER(ctypes.c_double)
c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_uint64_p = ctypes.POINTER(ctypes.c_uint64)
c_size_p = ctypes.POINTER(ctypes.c_size_t)
c_void_pp = ctypes.POINTER(ctypes.c_void_p)

i32, i64, u64, f32, f64 = (ctypes.c_int32, ctypes.c_int64, ctypes.c_uint64,
                           ctypes.c_float, ctypes.c_double)
size_t, vp, cstr = ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p
status = ctypes.c_int32

LOG_FN = ctypes.CFUNCTYPE(None, ctypes.c_int32, ctypes.c_char_p, ctypes.c_void_p)
PROGRESS_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_void_p)

# name -> (restype, argtypes). Handles are passed as c_void_p. Core and
# tape here; model.py, data.py and meta.py register theirs.
PROTOTYPES = {
    # ---- core.h
    "mp_version_number": (i32, []),
    "mp_version_string": (cstr, []),
    "mp_status_string": (cstr, [status]),
    "mp_last_error": (cstr, []),
    "mp_clear_error": (None, []),
    "mp_live_allocations": (i64, []),
    "mp_set_log_callback": (status, [LOG_FN, i32, vp]),
    "mp_blas_config": (cstr, []),
    "mp_blas_corename": (cstr, []),
    "mp_blas_num_threads": (i32, []),
    "mp_config_create": (status, [c_void_pp]),
    "mp_config_destroy": (None, [vp]),
    "mp_config_clone": (status, [c_void_pp, vp]),
    "mp_config_set_int": (status, [vp, i32, i64]),
    "mp_config_set_float": (status, [vp, i32, f64]),
    "mp_config_get_int": (status, [vp, i32, c_int64_p]),
    "mp_config_get_float": (status, [vp, i32, c_double_p]),
    "mp_config_is_set": (i32, [vp, i32]),
    "mp_config_key_name": (cstr, [i32]),
    "mp_config_key_type": (i32, [i32]),
    "mp_config_key_by_name": (status, [cstr, c_int32_p]),
    "mp_config_error": (cstr, [vp]),
    # ---- tape.h
    "mp_tape_create": (status, [c_void_pp]),
    "mp_tape_destroy": (None, [vp]),
    "mp_tape_reset": (status, [vp]),
    "mp_tape_error": (cstr, [vp]),
    "mp_tape_stat": (status, [vp, i32, c_int64_p]),
    "mp_tape_leaf": (status, [vp, i32, i32, c_float_p, size_t, i32, c_int32_p]),
    "mp_tape_fill": (status, [vp, i32, i32, f32, c_int32_p]),
    "mp_tape_shape": (status, [vp, i32, c_int32_p, c_int32_p]),
    "mp_tape_read": (status, [vp, i32, c_float_p, size_t]),
    "mp_tape_scalar": (status, [vp, i32, c_float_p]),
    "mp_tape_backward": (status, [vp, i32, i32]),
    "mp_tape_backward_wrt": (status, [vp, i32, i32, c_int32_p, size_t]),
    "mp_tape_grad": (status, [vp, i32, c_int32_p]),
    "mp_matmul": (status, [vp, i32, i32, i32, i32, c_int32_p]),
    "mp_add": (status, [vp, i32, i32, c_int32_p]),
    "mp_sub": (status, [vp, i32, i32, c_int32_p]),
    "mp_mul": (status, [vp, i32, i32, c_int32_p]),
    "mp_div": (status, [vp, i32, i32, c_int32_p]),
    "mp_scale": (status, [vp, i32, f32, c_int32_p]),
    "mp_add_scalar": (status, [vp, i32, f32, c_int32_p]),
    "mp_sum": (status, [vp, i32, i32, c_int32_p]),
    "mp_mean": (status, [vp, i32, i32, c_int32_p]),
    "mp_relu": (status, [vp, i32, c_int32_p]),
    "mp_tanh": (status, [vp, i32, c_int32_p]),
    "mp_sigmoid": (status, [vp, i32, c_int32_p]),
    "mp_gelu": (status, [vp, i32, c_int32_p]),
    "mp_exp": (status, [vp, i32, c_int32_p]),
    "mp_log": (status, [vp, i32, c_int32_p]),
    "mp_sqrt": (status, [vp, i32, c_int32_p]),
    "mp_square": (status, [vp, i32, c_int32_p]),
    "mp_softmax": (status, [vp, i32, c_int32_p]),
    "mp_log_softmax": (status, [vp, i32, c_int32_p]),
    "mp_cross_entropy": (status, [vp, i32, c_int32_p, size_t, c_int32_p]),
    "mp_mse": (status, [vp, i32, i32, c_int32_p]),
    "mp_layer_norm": (status, [vp, i32, i32, i32, f32, c_int32_p]),
    "mp_gather_rows": (status, [vp, i32, c_int32_p, size_t, c_int32_p]),
    "mp_concat": (status, [vp, i32, i32, i32, c_int32_p]),
    "mp_slice": (status, [vp, i32, i32, i32, i32, c_int32_p]),
    "mp_reshape": (status, [vp, i32, i32, i32, c_int32_p]),
    "mp_transpose": (status, [vp, i32, c_int32_p]),
    "mp_conv2d": (status, [vp, i32, i32, i32, i32, i32, i32, i32, i32, i32, c_int32_p]),
    "mp_maxpool2d": (status, [vp, i32, i32, i32, i32, c_int32_p]),
    "mp_batch_matmul": (status, [vp, i32, i32, i32, i32, i32, c_int32_p]),
    "mp_split_heads": (status, [vp, i32, i32, i32, i32, c_int32_p]),
    "mp_merge_heads": (status, [vp, i32, i32, i32, i32, c_int32_p]),
}

# MP_API functions deliberately not bound, with the reason.
UNBOUND = {
    "mp_set_allocator": "an allocator must be installed before any library object exists and is "
                        "called from worker threads for every allocation; a Python allocator would "
                        "serialise the workers on the GIL. Install one from C.",
}


class LibraryNotFound(OSError):
    """No libmetaprompt could be located (see metaprompt.load_library)."""


def _repo_candidate():
    here = os.path.dirname(os.path.abspath(__file__))
    # examples/python/metaprompt -> repository root
    root = os.path.normpath(os.path.join(here, "..", "..", ".."))
    path = os.path.join(root, "lib", "libmetaprompt.so.%d" % ABI_MAJOR)
    return path if os.path.isfile(path) else None


def _pkg_config_candidate():
    try:
        out = subprocess.run(["pkg-config", "--variable=libdir", "metaprompt"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    libdir = out.stdout.strip()
    if out.returncode != 0 or not libdir:
        return None
    path = os.path.join(libdir, "libmetaprompt.so.%d" % ABI_MAJOR)
    return path if os.path.isfile(path) else None


def _candidates():
    """(how, name) in search order; names are resolved lazily."""
    env = os.environ.get("MP_LIBRARY_PATH")
    if env:
        # An explicit choice is final: a wrong path must fail, not fall back.
        yield "MP_LIBRARY_PATH", env
        return
    repo = _repo_candidate()
    if repo:
        yield "repository lib/", repo
    yield "system loader", "libmetaprompt.so.%d" % ABI_MAJOR
    found = ctypes.util.find_library("metaprompt")
    if found:
        yield "ctypes.util.find_library", found
    pc = _pkg_config_candidate()
    if pc:
        yield "pkg-config libdir", pc


def open_library():
    """Returns (CDLL, how) for the first candidate that loads."""
    tried = []
    for how, name in _candidates():
        try:
            return ctypes.CDLL(name), how
        except OSError as e:
            tried.append("%s (%s): %s" % (how, name, e))
    raise LibraryNotFound("libmetaprompt.so.%d not found; tried:\n  %s\nSet MP_LIBRARY_PATH to the "
                          "library file, build it with `make`, or install it (make install) where "
                          "the loader or pkg-config finds it." % (ABI_MAJOR, "\n  ".join(tried)))


class _Missing:
    """Stands in for a function the loaded library does not export (an
    older library than the binding); calling it raises MetapromptError."""

    def __init__(self, name):
        self.name = name

    def __call__(self, *args):
        from metaprompt._base import MetapromptError, ERR_UNSUPPORTED
        raise MetapromptError(ERR_UNSUPPORTED, "%s: not exported by the loaded library %s"
                              % (self.name, LIB_PATH))


class _Functions:
    pass


def _int_range(ctype):
    bits = 8 * ctypes.sizeof(ctype)
    if ctype(-1).value == -1:
        return -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return 0, (1 << bits) - 1


# Integer parameter types whose Python values ctypes would silently wrap
# (c_int32 takes 2**32 + 5 as 5, c_uint64 takes -1 as 2**64 - 1).
_INT_RANGES = {t: (n,) + _int_range(t) for n, t in (("size_t", size_t), ("uint64", u64), ("int64", i64),
                                                     ("int32", i32))}


def _guarded(name, f, args):
    """f, or a wrapper raising OverflowError (naming the function, the
    argument's position and C type) for a Python integer outside the range
    of its integer parameter, instead of letting ctypes wrap it."""
    checks = [(i, _INT_RANGES[t]) for i, t in enumerate(args) if t in _INT_RANGES]
    if not checks:
        return f

    def call(*a):
        for i, (tname, lo, hi) in checks:
            v = a[i] if i < len(a) else None
            if isinstance(v, numbers.Integral) and not lo <= v <= hi:
                raise OverflowError("%s: argument %d (%s) must be in [%d, %d], got %d"
                                    % (name, i + 1, tname, lo, hi, int(v)))
        return f(*a)
    call.__name__ = name
    call.c_function = f
    return call


def _bind_into(fns, missing, lib, table):
    for name, (res, args) in table.items():
        try:
            f = getattr(lib, name)
        except AttributeError:
            setattr(fns, name, _Missing(name))
            missing.append(name)
            continue
        f.restype = res
        f.argtypes = args
        setattr(fns, name, _guarded(name, f, args))


def register(table):
    """Adds a module's prototypes (its wrapper file calls this at import)."""
    PROTOTYPES.update(table)
    _bind_into(F, MISSING, LIB, table)


def _library_file(lib):
    """Path of the file the loader actually mapped (dladdr on a symbol)."""
    class DlInfo(ctypes.Structure):
        _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                    ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]
    try:
        libc = ctypes.CDLL(None)
        dladdr = libc.dladdr
    except (OSError, AttributeError):
        return lib._name
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(DlInfo)]
    dladdr.restype = ctypes.c_int
    info = DlInfo()
    addr = ctypes.cast(lib.mp_version_string, ctypes.c_void_p)
    if dladdr(addr, ctypes.byref(info)) and info.dli_fname:
        return os.path.realpath(info.dli_fname.decode())
    return lib._name


LIB, LIB_HOW = open_library()
LIB_PATH = _library_file(LIB)
F, MISSING = _Functions(), []
_bind_into(F, MISSING, LIB, PROTOTYPES)
