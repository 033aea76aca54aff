"""Parses the preprocessed public header with cffi, opens the library with
it, and cross-checks every ctypes prototype against the header's types."""
import ctypes
import re
import subprocess

import pytest

from metaprompt import _lib
from conftest import ROOT

cffi = pytest.importorskip("cffi")


def preprocessed_declarations():
    src = subprocess.run(["cc", "-E", "-P", "-DMP_API=", "-I" + ROOT + "/include",
                          ROOT + "/include/metaprompt.h"],
                         capture_output=True, text=True, check=True).stdout
    # cffi cannot parse the system headers' typedefs (attributes, builtins)
    # and knows the standard integer types already: keep only our own
    # top-level declarations (the header has no bodies, so ';' splits them).
    keep = [s.strip() + ";" for s in src.split(";")
            if re.search(r"\bmp_\w+", s) and "__attribute__" not in s]
    return "\n".join(keep)


@pytest.fixture(scope="module")
def ffi_lib():
    ffi = cffi.FFI()
    ffi.cdef(preprocessed_declarations())
    return ffi, ffi.dlopen(_lib.LIB_PATH)


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
