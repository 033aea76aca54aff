"""Parses the whole preprocessed public header with cffi, opens the library
with it, and cross-checks every ctypes prototype against the header's types.

python3-cffi is optional for developers (the tests skip without it) but
required in CI: with CI=true or MP_REQUIRE_CFFI=1 a missing cffi fails."""
import ctypes
import os
import subprocess

import pytest

from metaprompt import _lib
from conftest import ROOT, header_functions


def _cffi_required():
    return os.environ.get("CI", "").lower() in ("true", "1") or \
        os.environ.get("MP_REQUIRE_CFFI") == "1"


try:
    import cffi
    _CFFI_ERROR = None
except ImportError as e:
    cffi, _CFFI_ERROR = None, str(e)
    if not _cffi_required():
        pytest.skip("cffi not installed (python3-cffi): %s" % e, allow_module_level=True)


@pytest.fixture(scope="module", autouse=True)
def cffi_present():
    """Required but missing: each test here fails (the others still run)."""
    if cffi is None:
        pytest.fail("cffi is required (CI=true or MP_REQUIRE_CFFI=1) but cannot be imported: "
                    "%s (install python3-cffi)" % _CFFI_ERROR, pytrace=False)


def preprocessed_header():
    """include/metaprompt.h through the C preprocessor, whole: our
    declarations and everything <stddef.h> and <stdint.h> bring in. MP_API
    is defined empty (the header allows it for FFI preprocessing) and GCC's
    __attribute__((...)), which cffi cannot parse (max_align_t's alignment),
    is removed by the preprocessor rather than by dropping declarations."""
    return subprocess.run(["cc", "-E", "-P", "-DMP_API=", "-D__attribute__(x)=",
                           "-I" + ROOT + "/include", ROOT + "/include/metaprompt.h"],
                          capture_output=True, text=True, check=True).stdout


@pytest.fixture(scope="module")
def ffi_lib(cffi_present):
    ffi = cffi.FFI()
    ffi.cdef(preprocessed_header())
    return ffi, ffi.dlopen(_lib.LIB_PATH)


def test_preprocessing_keeps_everything():
    src = preprocessed_header()
    assert "__attribute__" not in src
    assert "typedef struct mp_tape mp_tape;" in src
    # The system headers' typedefs are there too (nothing was filtered out).
    assert "size_t;" in src and "int32_t;" in src


def test_every_header_function_is_declared_and_exported(ffi_lib):
    ffi, lib = ffi_lib
    names = sorted(header_functions() - set(_lib.MISSING))
    assert len(names) >= 100
    for name in names:
        assert ffi.typeof(getattr(lib, name)).kind == "function", name
    for t in ("mp_status", "mp_var", "mp_log_fn", "mp_alloc_fn", "mp_meta_progress_fn"):
        assert t in ffi.list_types()[0], t


def test_cdef_parses_and_calls_version(ffi_lib):
    ffi, lib = ffi_lib
    assert ffi.string(lib.mp_version_string()).decode() == _lib.F.mp_version_string().decode()
    assert lib.mp_version_number() == _lib.F.mp_version_number()


def _kind(ctype_cls):
    """Classifies a ctypes type: ('ptr', size) / ('float', size) / ('int', size)."""
    if ctype_cls is None:
        return ("void", 0)
    if ctype_cls in (ctypes.c_void_p, ctypes.c_char_p) or hasattr(ctype_cls, "_type_") and \
            isinstance(getattr(ctype_cls, "_type_"), type) or \
            getattr(ctype_cls, "_flags_", 0) & 1:  # CFUNCTYPE
        return ("ptr", ctypes.sizeof(ctypes.c_void_p))
    if ctype_cls in (ctypes.c_float, ctypes.c_double):
        return ("float", ctypes.sizeof(ctype_cls))
    return ("int", ctypes.sizeof(ctype_cls))


def _ckind(ffi, t):
    if t.kind == "void":
        return ("void", 0)
    if t.kind in ("pointer", "function"):
        return ("ptr", ffi.sizeof("void *"))
    if t.cname in ("float", "double"):
        return ("float", ffi.sizeof(t))
    return ("int", ffi.sizeof(t))


def test_ctypes_prototypes_match_header_types(ffi_lib):
    ffi, lib = ffi_lib
    checked = 0
    for name, (res, args) in _lib.PROTOTYPES.items():
        if name in _lib.MISSING:
            continue
        t = ffi.typeof(getattr(lib, name))
        assert t.kind == "function", name
        assert _ckind(ffi, t.result) == _kind(res), "%s: result" % name
        assert len(t.args) == len(args), "%s: arity" % name
        for i, (ca, pa) in enumerate(zip(t.args, args)):
            assert _ckind(ffi, ca) == _kind(pa), "%s: argument %d (%s)" % (name, i, ca.cname)
        checked += 1
    assert checked >= 20
