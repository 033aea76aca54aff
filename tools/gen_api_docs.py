#!/usr/bin/env python3
"""Generates docs/API.md from the comments in the public headers.

    tools/gen_api_docs.py            write docs/API.md
    tools/gen_api_docs.py --check    fail if a function is undocumented or
                                     docs/API.md is stale (make docs-check)

Which comment documents a function (Doxygen-like, on purpose simple):
  - a comment ending on the line right above the declaration (no blank line);
    a `/** ... */` comment documents that one declaration only, a plain
    `/* ... */` comment documents the run of declarations that follows it
    directly (one comment for add/sub/mul/div);
  - or a comment on the declaration's last line, after the `;`.
Ruler comments `/* ---- title ---- */` are section headings, never docs.
Constants, typedefs and their comments are reproduced as C code.

Every function returning mp_status must list its error statuses: its doc
comment contains "Errors:", or a free-standing comment earlier in the same
section does (errors common to a run of functions, as for the tape's ops).
--check (and the generator) fail otherwise.
Standard library only (any python3).
"""
import difflib
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
UMBRELLA = os.path.join(ROOT, "include", "metaprompt.h")
OUT = os.path.join(ROOT, "docs", "API.md")

RULER = re.compile(r"^\s*/\*\s*-{2,}\s*(.*?)\s*-*\s*\*/\s*$")
SKIP = re.compile(r'^\s*(#\s*(ifndef|ifdef|if|endif|else|elif|include|undef)\b'
                  r'|#\s*define\s+METAPROMPT_\w+_?H\b|#\s*define\s+METAPROMPT_H\b|#\s*define\s+MP_API\b|#\s*define\s+\w+\s*$'
                  r'|extern\s+"C"|\}\s*$|#\s*(define|error)\b.*__cplusplus)')


def headers():
    """Sub-headers in the order metaprompt.h includes them."""
    text = open(UMBRELLA).read()
    return [os.path.join(ROOT, "include", m) for m in re.findall(r'#include\s+"([^"]+)"', text)]


def clean_comment(lines):
    """Comment text without the /* */ and leading * decoration, dedented."""
    text = "\n".join(lines)
    text = re.sub(r"^\s*/\*+!?", "", text)
    text = re.sub(r"\*+/\s*$", "", text)
    out = [re.sub(r"^\s*\*( |$)", "", ln).rstrip() for ln in text.split("\n")]
    while out and not out[0].strip():
        out.pop(0)
    while out and not out[-1].strip():
        out.pop()
    if not out:
        return ""
    # The first line follows "/*" on the opener's line: its indent is not
    # the block's.
    first, rest = out[0].strip(), out[1:]
    ind = min((len(ln) - len(ln.lstrip()) for ln in rest if ln.strip()), default=0)
    return "\n".join([first] + [ln[ind:] for ln in rest])


class Module:
    def __init__(self, path):
        self.path = path
        self.name = os.path.relpath(path, os.path.join(ROOT, "include"))
        self.intro = ""
        self.items = []        # ("section", title) | ("code", text) | ("func", decls, doc)
        self.undocumented = []
        self.no_errors = []    # mp_status functions whose comments list no "Errors:"
        self.parse(open(path).read().split("\n"))

    def parse(self, lines):
        i, n = 0, len(lines)
        comment = None          # (lines, doxygen, end_index) of the last comment
        group = None            # open plain-comment function group
        group_doc = None        # its comment text
        common_errors = False   # a free-standing "Errors:" comment in this section
        code = []               # pending constants/typedefs
        first_comment = True

        def flush_code():
            nonlocal code
            while code and not code[-1].strip():
                code.pop()
            if code:
                self.items.append(("code", "\n".join(code)))
            code = []

        while i < n:
            ln = lines[i]
            s = ln.strip()
            m = RULER.match(ln)
            if m:
                flush_code()
                self.items.append(("section", m.group(1)))
                comment, group = None, None
                common_errors = False
                i += 1
                continue
            if s.startswith("/*"):
                j = i
                while "*/" not in lines[j]:
                    j += 1
                block = lines[i:j + 1]
                if first_comment and not self.items and not code:
                    self.intro = clean_comment(block)
                    first_comment = False
                    comment = None
                elif j + 1 < n and lines[j + 1].lstrip().startswith("MP_API"):
                    comment = (block, s.startswith("/**"), j)
                else:
                    code.extend(block)
                    comment = None
                    common_errors = common_errors or "Errors:" in clean_comment(block)
                group = None
                i = j + 1
                continue
            if s.startswith("MP_API"):
                flush_code()
                j = i
                while ";" not in lines[j]:
                    j += 1
                decl_lines = lines[i:j + 1]
                tail = decl_lines[-1].split(";", 1)[1].strip()
                decl_lines[-1] = decl_lines[-1].split(";", 1)[0] + ";"
                decl = re.sub(r"\s+", " ", " ".join(decl_lines).replace("MP_API ", "", 1)).strip()
                name = re.search(r"\b(mp_\w+)\s*\(", decl).group(1)

                def need_errors(text):
                    if decl.startswith("mp_status ") and not common_errors and \
                            "Errors:" not in (text or ""):
                        self.no_errors.append("%s: %s" % (self.name, name))
                doc = None
                if tail.startswith("/*"):
                    doc = clean_comment([tail])
                    group = None
                elif comment is not None and comment[2] == i - 1:
                    doc = clean_comment(comment[0])
                    group = None if comment[1] else [decl]
                    if group is not None:
                        group_doc = doc
                        need_errors(doc)
                        self.items.append(("func", group, doc))
                        comment = None
                        i = j + 1
                        continue
                elif group is not None:
                    need_errors(group_doc)
                    group.append(decl)
                    i = j + 1
                    continue
                comment = None
                if doc is None:
                    self.undocumented.append("%s: %s" % (self.name, name))
                else:
                    need_errors(doc)
                self.items.append(("func", [decl], doc))
                i = j + 1
                continue
            if not s:
                group = None
                comment = None
                if code and code[-1].strip():
                    code.append("")
                i += 1
                continue
            if SKIP.match(ln):
                i += 1
                continue
            group = None
            code.append(ln.rstrip())
            i += 1
        flush_code()

    def markdown(self):
        out = ["## %s" % self.name, ""]
        if self.intro:
            out += [self.intro, ""]
        for k, item in enumerate(self.items):
            if item[0] == "section":
                if k + 1 == len(self.items) or self.items[k + 1][0] == "section":
                    continue  # an empty section (e.g. the export macro)
                out += ["### %s" % item[1][:1].upper() + item[1][1:], ""]
            elif item[0] == "code":
                out += ["```c", item[1], "```", ""]
            else:
                out += ["```c"] + item[1] + ["```", ""]
                out += [item[2] if item[2] else "*(undocumented)*", ""]
        return out


def function_names(text):
    return re.findall(r"^\s*MP_API\b.*?\b(mp_\w+)\s*\(", text, flags=re.M)


def generate():
    mods = [Module(p) for p in headers()]
    out = ["# libmetaprompt API reference", "",
           "<!-- Generated by tools/gen_api_docs.py from include/metaprompt/*.h: do not edit;",
           "     run `make docs` after changing a header (`make docs-check` verifies). -->", "",
           "Every function returns an `mp_status` unless shown otherwise; conventions (errors, "
           "ownership, threads) are described at the top of `core.h` below and in "
           "[ABI.md](ABI.md). The concepts are explained in [GUIDE.md](GUIDE.md).", "",
           "## Contents", ""]
    for m in mods:
        names = function_names(open(m.path).read())
        anchor = re.sub(r"[^a-z0-9 -]", "", m.name.lower()).replace(" ", "-")
        out.append("- [%s](#%s) — %d functions" % (m.name, anchor, len(names)))
    out.append("")
    for m in mods:
        out += m.markdown()
    undocumented = [u for m in mods for u in m.undocumented]
    return "\n".join(out).rstrip() + "\n", undocumented, mods


def missing_errors(mods):
    return [u for m in mods for u in m.no_errors]


def main(argv):
    check = "--check" in argv
    text, undocumented, mods = generate()
    declared = sum(len(function_names(open(m.path).read())) for m in mods)
    documented = sum(len(it[1]) for m in mods for it in m.items if it[0] == "func")
    rc = 0
    if documented != declared:
        print("gen_api_docs: parsed %d declarations but the headers have %d MP_API lines"
              % (documented, declared), file=sys.stderr)
        rc = 1
    if undocumented:
        print("gen_api_docs: MP_API functions without a doc comment:\n  " +
              "\n  ".join(undocumented), file=sys.stderr)
        rc = 1
    no_errors = missing_errors(mods)
    if no_errors:
        print("gen_api_docs: functions returning mp_status whose comment has no \"Errors:\" list"
              " (CONVENTIONS #18):\n  " + "\n  ".join(no_errors), file=sys.stderr)
        rc = 1
    if check:
        old = open(OUT).read() if os.path.exists(OUT) else ""
        if old != text:
            diff = difflib.unified_diff(old.split("\n"), text.split("\n"), "docs/API.md",
                                        "generated", lineterm="", n=1)
            print("gen_api_docs: docs/API.md is stale (run `make docs`):", file=sys.stderr)
            print("\n".join(list(diff)[:40]), file=sys.stderr)
            rc = 1
        if rc == 0:
            print("gen_api_docs: %d functions documented, docs/API.md up to date" % declared)
    else:
        os.makedirs(os.path.dirname(OUT), exist_ok=True)
        with open(OUT, "w") as f:
            f.write(text)
        print("gen_api_docs: wrote docs/API.md (%d functions)" % declared)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
