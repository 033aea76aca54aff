import os
import re
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
ROOT = os.path.normpath(os.path.join(PYDIR, "..", ".."))
sys.path.insert(0, PYDIR)

import metaprompt  # noqa: E402
from metaprompt import _lib  # noqa: E402

HEADERS = sorted(os.path.join(ROOT, "include", "metaprompt", f)
                 for f in os.listdir(os.path.join(ROOT, "include", "metaprompt")) if f.endswith(".h"))


def header_text():
    return "\n".join(open(h).read() for h in HEADERS)


def header_functions():
    """MP_API function names (the name is on the MP_API line, house rule)."""
    names = set()
    for line in header_text().splitlines():
        m = re.match(r"\s*MP_API\b.*?\b(mp_\w+)\s*\(", line)
        if m:
            names.add(m.group(1))
    return names


def requires(*symbols):
    """Skips a test while the loaded library lacks a module (it lands on main
    module by module); the coverage test still checks the binding itself."""
    missing = [s for s in symbols if s in _lib.MISSING]
    return pytest.mark.skipif(bool(missing), reason="library lacks %s" % ", ".join(missing))


@pytest.fixture
def no_leaks():
    """Fails the test if it leaves library allocations behind."""
    import gc
    gc.collect()
    before = metaprompt.live_allocations()
    yield
    gc.collect()
    assert metaprompt.live_allocations() == before
