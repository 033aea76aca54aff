"""The binding cannot silently fall behind the headers: every MP_API function
must have a prototype that a wrapper uses (or be listed in _lib.UNBOUND with
a reason), and every integer MP_* constant must exist in the package with
the same value."""
import os
import re

import metaprompt
from metaprompt import _lib
from conftest import PYDIR, header_functions, header_text

# #defines that are not API constants for Python.
NOT_CONSTANTS = {"MP_API", "MP_VERSION_MAJOR", "MP_VERSION_MINOR", "MP_VERSION_PATCH",
                 "MP_VERSION_STRING", "MP_VERSION_NUMBER", "MP_STATUS_COUNT_"}


def wrapper_sources():
    pkg = os.path.join(PYDIR, "metaprompt")
    return "\n".join(open(os.path.join(pkg, f)).read()
                     for f in sorted(os.listdir(pkg)) if f.endswith(".py") and f != "_lib.py")


def test_headers_declare_functions():
    assert len(header_functions()) > 20


def test_every_header_function_is_bound_or_listed():
    declared = header_functions()
    bound = set(_lib.PROTOTYPES)
    unbound = set(_lib.UNBOUND)
    missing = sorted(declared - bound - unbound)
    assert not missing, "MP_API functions without a Python binding: %s" % missing
    stale = sorted((bound | unbound) - declared)
    assert not stale, "bound/listed but not in the headers: %s" % stale
    assert not bound & unbound
    for name, reason in _lib.UNBOUND.items():
        assert len(reason) > 20, name


def test_every_prototype_is_used_by_a_wrapper():
    src = wrapper_sources()
    unused = sorted(n for n in _lib.PROTOTYPES if not re.search(r"\bF\.%s\b|\"%s\"" % (n, n), src))
    assert not unused, "prototypes no wrapper calls: %s" % unused


def test_prototype_arity_matches_header():
    """Counts parameters in the header declarations (cffi checks the types)."""
    text = re.sub(r"/\*.*?\*/", "", header_text(), flags=re.S)
    for m in re.finditer(r"MP_API\s+[^;(]*?\b(mp_\w+)\s*\(([^)]*)\)\s*;", text):
        name, params = m.group(1), m.group(2).strip()
        if name not in _lib.PROTOTYPES:
            continue
        n = 0 if params in ("", "void") else params.count(",") + 1
        assert len(_lib.PROTOTYPES[name][1]) == n, name


def test_every_integer_constant_is_exported_with_its_value():
    text = header_text()
    bad = []
    for m in re.finditer(r"^\s*#\s*define\s+(MP_\w+)\b(.*)$", text, flags=re.M):
        name, rest = m.group(1), re.sub(r"/\*.*", "", m.group(2)).strip()
        if name in NOT_CONSTANTS or name.endswith("_H") or not rest:  # guards
            continue
        v = re.fullmatch(r"\(?\s*(-?(?:0x[0-9a-fA-F]+|\d+))\s*\)?", rest)
        if not v:
            bad.append("%s: not an integer literal (%r); add to NOT_CONSTANTS?" % (name, rest))
            continue
        value = int(v.group(1), 0)
        py = name[3:]
        if getattr(metaprompt, py, None) != value:
            bad.append("metaprompt.%s should be %d, is %r" % (py, value,
                                                             getattr(metaprompt, py, None)))
    assert not bad, "\n".join(bad)
