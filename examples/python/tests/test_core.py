import gc
import re

import pytest

import metaprompt as mp
from conftest import ROOT


def test_version_matches_header():
    h = open(ROOT + "/include/metaprompt/core.h").read()
    s = re.search(r'#define MP_VERSION_STRING "([^"]+)"', h).group(1)
    assert mp.version_string() == s == mp.__version__
    major, minor, patch = (int(x) for x in s.split("."))
    assert mp.version_number() == major * 10000 + minor * 100 + patch
    assert major == mp.ABI_MAJOR


def test_library_is_the_one_found():
    assert "libmetaprompt.so" in mp.library_path()
    assert mp.library_found_by() in ("MP_LIBRARY_PATH", "repository lib/", "system loader",
                                     "ctypes.util.find_library", "pkg-config libdir")


def test_status_strings():
    assert mp.status_string(mp.OK)
    assert mp.status_string(mp.ERR_RANGE) != mp.status_string(mp.ERR_IO)
    assert mp.status_string(9999) == "unknown status"
    assert mp.STATUS_NAMES[mp.ERR_RANGE] == "MP_ERR_RANGE"


def test_blas_info():
    assert mp.blas_corename()
    assert mp.blas_config()
    assert mp.blas_num_threads() >= 1


def test_config_roundtrip(no_leaks):
    with mp.Config({mp.CFG_SEED: 7}) as cfg:
        assert cfg.get_int(mp.CFG_SEED) == 7
        assert cfg.is_set(mp.CFG_SEED) and not cfg.is_set(mp.CFG_THREADS)
        assert cfg[mp.CFG_THREADS] == 1  # default
        cfg[mp.CFG_THREADS] = 2
        name = mp.key_name(mp.CFG_THREADS)
        assert mp.key_by_name(name) == mp.CFG_THREADS
        assert cfg[name] == 2
        assert mp.key_type(mp.CFG_THREADS) == mp.CFG_TYPE_INT
        assert mp.key_type(98) == 0 and mp.key_name(98) is None
        c2 = cfg.clone()
        cfg[mp.CFG_SEED] = 8
        assert c2[mp.CFG_SEED] == 7
        c2.close()


def test_config_error_has_status_and_message():
    cfg = mp.Config()
    with pytest.raises(mp.MetapromptError) as ei:
        cfg.set(mp.CFG_THREADS, 0)
    e = ei.value
    assert e.status == mp.ERR_RANGE and e.status_name == "MP_ERR_RANGE"
    assert "mp_config_set_int" in e.message and "0" in e.message
    assert cfg.error() == e.message
    assert cfg[mp.CFG_THREADS] == 1  # unchanged
    with pytest.raises(mp.MetapromptError) as ei:
        cfg.set_float(mp.CFG_SEED, 1.5)
    assert ei.value.status == mp.ERR_INVALID_ARGUMENT
    with pytest.raises(mp.MetapromptError) as ei:
        mp.key_by_name("no.such.key")
    assert ei.value.status == mp.ERR_NOT_FOUND
    assert "no.such.key" in mp.last_error() or mp.last_error()
    mp.clear_error()
    assert mp.last_error() == ""
    with pytest.raises(TypeError):
        cfg.set(mp.CFG_SEED, 1.5)


def test_closed_handle_raises_and_close_is_idempotent():
    cfg = mp.Config()
    cfg.close()
    cfg.close()
    assert cfg.closed
    with pytest.raises(mp.MetapromptError) as ei:
        cfg.get_int(mp.CFG_SEED)
    assert ei.value.status == mp.ERR_STATE


def test_garbage_collection_frees():
    gc.collect()
    before = mp.live_allocations()
    cfgs = [mp.Config() for _ in range(10)]
    assert mp.live_allocations() > before
    del cfgs
    gc.collect()
    assert mp.live_allocations() == before


def test_log_callback_install_and_bad_level():
    got = []
    mp.set_log_callback(lambda lvl, msg: got.append((lvl, msg)), mp.LOG_DEBUG)
    mp.set_log_callback(None)
    with pytest.raises(mp.MetapromptError) as ei:
        mp.set_log_callback(lambda lvl, msg: None, 7)
    assert ei.value.status == mp.ERR_INVALID_ARGUMENT
