"""The binding finds an installed library the way a user's would: through
the system loader (LD_LIBRARY_PATH) or pkg-config, with the package copied
away from the repository so lib/ is not next to it."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import PYDIR, ROOT

PROBE = "import metaprompt as m; print(m.library_found_by()); print(m.library_path()); " \
        "print(m.Config().get_int(m.CFG_THREADS))"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("install")
    prefix = tmp / "prefix"
    # LDCONFIG empty: a scratch prefix needs no refresh of the system's loader cache.
    subprocess.run(["make", "-s", "-C", ROOT, "install", "PREFIX=%s" % prefix, "LDCONFIG="], check=True,
                   stdout=subprocess.DEVNULL)
    site = tmp / "site"
    shutil.copytree(os.path.join(PYDIR, "metaprompt"), site / "metaprompt",
                    ignore=shutil.ignore_patterns("__pycache__"))
    return prefix, site


def run_probe(site, **env_over):
    env = {k: v for k, v in os.environ.items()
           if k not in ("MP_LIBRARY_PATH", "LD_LIBRARY_PATH", "PKG_CONFIG_PATH")}
    env.update({k: str(v) for k, v in env_over.items()})
    env["PYTHONPATH"] = str(site)
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=env,
                       cwd=str(site))
    return r


def system_has_library():
    r = subprocess.run([sys.executable, "-c", "import ctypes; ctypes.CDLL('libmetaprompt.so.0')"],
                       capture_output=True, env={"PATH": os.environ.get("PATH", "")})
    return r.returncode == 0


def test_found_by_system_loader(installed):
    prefix, site = installed
    r = run_probe(site, LD_LIBRARY_PATH=prefix / "lib")
    assert r.returncode == 0, r.stderr
    how, path, threads = r.stdout.split("\n")[:3]
    assert how == "system loader"
    assert path.startswith(str(prefix / "lib")), path
    assert threads == "1"


def test_found_by_pkg_config(installed):
    if system_has_library():
        pytest.skip("a libmetaprompt is installed system-wide; the loader finds it first")
    prefix, site = installed
    r = run_probe(site, PKG_CONFIG_PATH=prefix / "lib" / "pkgconfig")
    assert r.returncode == 0, r.stderr
    how, path = r.stdout.split("\n")[:2]
    assert how == "pkg-config libdir"
    assert path.startswith(str(prefix / "lib")), path


def test_explicit_path_is_final(installed):
    prefix, site = installed
    r = run_probe(site, MP_LIBRARY_PATH=prefix / "nonexistent.so", LD_LIBRARY_PATH=prefix / "lib")
    assert r.returncode != 0 and "LibraryNotFound" in r.stderr and "MP_LIBRARY_PATH" in r.stderr
    real = prefix / "lib" / "libmetaprompt.so.0"
    r = run_probe(site, MP_LIBRARY_PATH=real)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[0] == "MP_LIBRARY_PATH"


def test_not_found_message_lists_what_was_tried(installed):
    if system_has_library():
        pytest.skip("a libmetaprompt is installed system-wide")
    prefix, site = installed
    r = run_probe(site)
    assert r.returncode != 0
    assert "LibraryNotFound" in r.stderr and "system loader" in r.stderr
