"""tools/gen_api_docs.py (make docs-check) must fail on an undocumented
function and on an mp_status function whose comments list no "Errors:", and
follow the documented comment rules."""
import importlib.util
import os

from conftest import ROOT

spec = importlib.util.spec_from_file_location("gen_api_docs",
                                              os.path.join(ROOT, "tools", "gen_api_docs.py"))
gen = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gen)

HEADER = """/* intro text */
#ifndef X_H
#define X_H
/* ---- things ---- */
#define MP_THING 3 /* a constant */
/** One function. */
MP_API mp_status mp_one(int32_t a);
MP_API mp_status mp_two(int32_t a);
/* Shared by a group. */
MP_API mp_status mp_three(int32_t a);
MP_API mp_status mp_four(int32_t a,
                         int32_t b);

MP_API mp_status mp_five(void); /* trailing doc */
/* ---- empty ---- */
#endif
"""


def test_rules(tmp_path):
    p = tmp_path / "x.h"
    p.write_text(HEADER)
    m = gen.Module(str(p))
    docs = {d: doc for kind, *rest in m.items if kind == "func" for d, doc in
            [(tuple(rest[0]), rest[1])]}
    assert m.intro == "intro text"
    assert docs[("mp_status mp_one(int32_t a);",)] == "One function."
    assert docs[("mp_status mp_two(int32_t a);",)] is None       # /** covers one only
    assert docs[("mp_status mp_three(int32_t a);",
                 "mp_status mp_four(int32_t a, int32_t b);")] == "Shared by a group."
    assert docs[("mp_status mp_five(void);",)] == "trailing doc"
    assert len(m.undocumented) == 1 and m.undocumented[0].endswith("mp_two")
    md = "\n".join(m.markdown())
    assert "### Things" in md and "#define MP_THING 3" in md and "### Empty" not in md

    # None of these comments lists errors: every documented mp_status
    # function is flagged (mp_two is reported as undocumented instead).
    assert [u.split(": ")[1] for u in m.no_errors] == ["mp_one", "mp_three", "mp_four", "mp_five"]


ERRORS_HEADER = """/* intro */
/* ---- first ---- */
/** Listed. Errors: MP_ERR_NULL_POINTER. */
MP_API mp_status mp_listed(int32_t a);
/** Not listed, although MP_ERR_RANGE is named. */
MP_API mp_status mp_unlisted(int32_t a);
/** Returns no status. */
MP_API int32_t mp_count(void);
/* A group. Errors: MP_ERR_STATE. */
MP_API mp_status mp_g1(void);
MP_API mp_status mp_g2(void);
/* Common to the functions below. Errors: MP_ERR_NULL_POINTER. */
/* Op one. */
MP_API mp_status mp_op1(void);
MP_API mp_status mp_op2(void); /* trailing, no list */
/* ---- second: the common list above does not reach here ---- */
/* Op three. */
MP_API mp_status mp_op3(void);
"""


def test_errors_lists_required(tmp_path):
    p = tmp_path / "e.h"
    p.write_text(ERRORS_HEADER)
    m = gen.Module(str(p))
    assert [u.split(": ")[1] for u in m.no_errors] == ["mp_unlisted", "mp_op3"]
    assert gen.missing_errors([m]) == m.no_errors


def test_real_headers_list_errors():
    text, undocumented, mods = gen.generate()
    assert undocumented == []
    assert gen.missing_errors(mods) == []
