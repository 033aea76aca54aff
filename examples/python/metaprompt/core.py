"""core.h: version, errors, logging, BLAS information, configurations."""
import ctypes
import numbers
import operator

import numpy as np

from metaprompt import _lib
from metaprompt._lib import F
from metaprompt._base import Handle, as_double, as_int64, as_integer, c_name, check, _text

__all__ = ["CFG_SEED", "CFG_THREADS", "CFG_TYPE_INT", "CFG_TYPE_FLOAT", "LOG_DEBUG", "LOG_INFO",
           "LOG_WARN", "LOG_ERROR", "version_number", "version_string", "status_string",
           "last_error", "clear_error", "live_allocations", "blas_config", "blas_corename",
           "blas_num_threads", "library_path", "library_found_by", "set_log_callback",
           "key_name", "key_type", "key_by_name", "Config"]

# Generic configuration keys and key types (core.h).
CFG_SEED = 1
CFG_THREADS = 2
CFG_TYPE_INT = 1
CFG_TYPE_FLOAT = 2

LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR = 0, 1, 2, 3


def version_number():
    """MAJOR*10000 + MINOR*100 + PATCH of the loaded library."""
    return F.mp_version_number()


def version_string():
    return _text(F.mp_version_string())


def status_string(status):
    """Static description of a status code."""
    return _text(F.mp_status_string(as_integer(status, "status_string: status")))


def last_error():
    """The calling thread's last failure message ("" if none)."""
    return _text(F.mp_last_error())


def clear_error():
    F.mp_clear_error()


def live_allocations():
    """Live allocations made through the library's allocator (leak checks)."""
    return F.mp_live_allocations()


def blas_config():
    return _text(F.mp_blas_config())


def blas_corename():
    """OpenBLAS kernel core in use, e.g. "Haswell"."""
    return _text(F.mp_blas_corename())


def blas_num_threads():
    return F.mp_blas_num_threads()


def library_path():
    """File name of the loaded shared library."""
    return _lib.LIB_PATH


def library_found_by():
    """How the library was found: "MP_LIBRARY_PATH", "repository lib/",
    "system loader", "ctypes.util.find_library" or "pkg-config libdir"."""
    return _lib.LIB_HOW


# The installed C callback must outlive its installation: keep it here.
_log_cb = None


def set_log_callback(fn, min_level=LOG_WARN):
    """Installs fn(level:int, msg:str) as the process-wide log callback
    (None silences). It may be called from the library's worker threads;
    exceptions it raises are swallowed (they cannot cross C)."""
    global _log_cb
    if fn is None:
        cb = ctypes.cast(None, _lib.LOG_FN)
    else:
        def trampoline(level, msg, _user):
            try:
                fn(level, _text(msg))
            except Exception:
                pass
        cb = _lib.LOG_FN(trampoline)
    check(F.mp_set_log_callback(cb, as_integer(min_level, "set_log_callback: min_level"), None))
    _log_cb = cb if fn is not None else None


def key_name(key):
    """Name of a configuration key ("model.hidden_width") or None."""
    n = F.mp_config_key_name(_key(key))
    return _text(n) if n else None


def key_type(key):
    """CFG_TYPE_INT, CFG_TYPE_FLOAT, or 0 for an unknown key."""
    return F.mp_config_key_type(_key(key))


def key_by_name(name):
    out = ctypes.c_int32()
    check(F.mp_config_key_by_name(c_name(name, "key_by_name: name"), ctypes.byref(out)))
    return out.value


def _key(k):
    """A key number from a CFG_* integer or a key name; TypeError for
    anything else (a float or a bool would have been truncated to some
    other key)."""
    if isinstance(k, str):
        return key_by_name(k)
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, numbers.Integral):
        raise TypeError("a configuration key is a CFG_* integer or a key name; got %s %r" % (type(k).__name__, k))
    return operator.index(k)


def _key_label(key, k):
    """'key 'seed' (1)' for messages."""
    name = key_name(k) if -(1 << 31) <= k < (1 << 31) else None
    return "key %r (%d)" % (name, k) if name else "key %r" % (key,)


class KeyedSettings:
    """get/set of configuration keys by the key's type, over the four C
    functions a handle type names (mp_<type>_get_int, ..._set_float). An
    int key takes an integer (or an integral float) in the int64 range:
    OverflowError naming the key otherwise (the library then checks the
    key's own range); a float key takes a real number. An unknown key is
    the library's MP_ERR_NOT_FOUND, whatever the value."""

    _get_int_fn = _get_float_fn = _set_int_fn = _set_float_fn = None

    def get_int(self, key):
        out = ctypes.c_int64()
        self._check(getattr(F, self._get_int_fn)(self.ptr, _key(key), ctypes.byref(out)))
        return out.value

    def get_float(self, key):
        out = ctypes.c_double()
        self._check(getattr(F, self._get_float_fn)(self.ptr, _key(key), ctypes.byref(out)))
        return out.value

    def get(self, key):
        """The key's value: int or float by the key's type."""
        k = _key(key)
        return self.get_float(k) if key_type(k) == CFG_TYPE_FLOAT else self.get_int(k)

    def set_int(self, key, value):
        k = _key(key)
        self._check(getattr(F, self._set_int_fn)(self.ptr, k, as_int64(value, _key_label(key, k))))
        return self

    def set_float(self, key, value):
        k = _key(key)
        self._check(getattr(F, self._set_float_fn)(self.ptr, k, as_double(value, _key_label(key, k))))
        return self

    def set(self, key, value):
        """Sets an int or float key according to the key's type; returns self."""
        k = _key(key)
        t = key_type(k)
        if t == CFG_TYPE_FLOAT:
            return self.set_float(k, value)
        if t == 0:  # unknown key: the library's MP_ERR_NOT_FOUND, whatever the value
            self._check(getattr(F, self._set_int_fn)(self.ptr, k, 0))
        return self.set_int(k, value)


class Config(KeyedSettings, Handle):
    """A key/value configuration (mp_config). Keys are CFG_* integers or
    their names ("meta.inner_steps"). Config(**{"model.hidden_width": 40})
    or Config({CFG_SEED: 3}) sets values at creation."""

    _destroy_fn = "mp_config_destroy"
    _error_fn = "mp_config_error"
    _get_int_fn, _get_float_fn = "mp_config_get_int", "mp_config_get_float"
    _set_int_fn, _set_float_fn = "mp_config_set_int", "mp_config_set_float"

    def __init__(self, values=None, **named):
        out = ctypes.c_void_p()
        check(F.mp_config_create(ctypes.byref(out)))
        Handle.__init__(self, out.value)
        for k, v in dict(values or {}, **named).items():
            self.set(k, v)

    def clone(self):
        return Config._create(F.mp_config_clone, self.ptr)

    def is_set(self, key):
        return bool(F.mp_config_is_set(self.ptr, _key(key)))

    def __getitem__(self, key):
        return self.get(key)

    def __setitem__(self, key, value):
        self.set(key, value)


def config_ptr(cfg):
    """Pointer for an optional Config argument: None -> NULL (defaults); a
    dict is turned into a temporary Config (returned to keep it alive)."""
    if cfg is None:
        return None, None
    if isinstance(cfg, dict):
        cfg = Config(cfg)
    if not isinstance(cfg, Config):
        raise TypeError("expected a metaprompt.Config, a dict or None")
    return cfg.ptr, cfg
