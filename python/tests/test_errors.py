"""Errors carry fa_status_string + fa_last_error; argument checks; where the library is found."""
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import flashport
from flashport import _capi
from conftest import make


def test_invalid_argument_carries_status_and_message(rng):
    q, _ = make(rng, (1, 4, 3, 16), "float32")
    k, _ = make(rng, (1, 4, 2, 16), "float32")
    with pytest.raises(flashport.FlashportError) as ei:
        flashport.flash_attn_func(q, k, k)
    e = ei.value
    assert e.status == flashport.FA_ERR_INVALID_ARGUMENT and e.status_name == "FA_ERR_INVALID_ARGUMENT"
    assert "invalid argument" in str(e) and "heads_kv" in e.detail and e.call == "fa_plan_create"


def test_shape_mismatch_names_the_tensor(rng):
    q, _ = make(rng, (2, 4, 2, 16), "float32")
    k, _ = make(rng, (2, 9, 2, 16), "float32")
    v, _ = make(rng, (2, 8, 2, 16), "float32")
    with pytest.raises(flashport.FlashportError, match=r"v\.shape\[1\]=8"):
        flashport.flash_attn_func(q, k, v)


def test_bad_varlen_metadata(rng):
    q, _ = make(rng, (10, 2, 16), "float32")
    cu = np.array([0, 4, 12], np.int32)  # ends past total
    with pytest.raises(flashport.FlashportError, match="cu_seqlens_q"):
        flashport.flash_attn_varlen_func(q, q, q, cu, np.array([0, 4, 10], np.int32), 8, 6)


def test_python_side_checks(rng):
    q, _ = make(rng, (1, 4, 2, 16), "float32")
    with pytest.raises(ValueError, match="softmax_scale"):
        flashport.flash_attn_func(q, q, q, softmax_scale=0.0)
    with pytest.raises(ValueError, match="window_size"):
        flashport.flash_attn_func(q, q, q, window_size=(1, 2, 3))
    with pytest.raises(ValueError, match=r"\(batch, seqlen_q, nheads, headdim\)"):
        flashport.flash_attn_func(q[0], q[0], q[0])
    with pytest.raises(TypeError, match="float64"):
        flashport.flash_attn_func(q.astype(np.float64), q, q)
    with pytest.raises(TypeError, match="numpy array or a torch tensor"):
        flashport.flash_attn_func(q.tolist(), q, q)
    ro = q.copy()
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        flashport.flash_attn_with_kvcache(q, ro, q.copy(), q, q, cache_seqlens=0)


def test_read_only_inputs_are_fine(rng):
    q, _ = make(rng, (1, 4, 2, 16), "float16")
    q.flags.writeable = False
    flashport.flash_attn_func(q, q, q)


def test_devices_and_version():
    devs = flashport.devices()
    assert devs and any(d.backend == _capi.FA_BACKEND_CPU for d in devs)
    cpu = [d for d in devs if d.backend == _capi.FA_BACKEND_CPU][0]
    assert cpu.backend_name == "cpu" and cpu.compute_units >= 1 and cpu.name
    assert flashport.library_version().count(".") == 2


def _run(code, env):
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


def test_library_not_found_message(tmp_path):
    env = dict(os.environ, FLASHPORT_LIBRARY=str(tmp_path / "nope.so"),
               PYTHONPATH=os.path.dirname(os.path.dirname(flashport.__file__)))
    r = _run("import flashport; flashport.devices()", env)
    assert r.returncode != 0 and "LibraryNotFound" in r.stderr and "FLASHPORT_LIBRARY" in r.stderr


def test_library_copy_inside_package_is_found(tmp_path):
    """Without FLASHPORT_LIBRARY, a libflashport.so placed inside the package directory comes first."""
    pkg = os.path.dirname(flashport.__file__)
    shutil.copytree(pkg, tmp_path / "flashport", ignore=shutil.ignore_patterns("__pycache__", "*.so*"))
    shutil.copy(_capi.library_path(), tmp_path / "flashport" / "libflashport.so")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    env.pop("FLASHPORT_LIBRARY", None)
    r = _run("import flashport; print(flashport.library_path()); print(len(flashport.devices()))", env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == str(tmp_path / "flashport" / "libflashport.so")


def test_library_found_in_source_tree_build_dir():
    """From a source checkout without FLASHPORT_LIBRARY, the repository's build/ is searched."""
    from conftest import REPO

    lib = os.path.join(REPO, "build", "libflashport.so")
    if not os.path.exists(lib):
        pytest.skip("no %s" % lib)
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "python"))
    env.pop("FLASHPORT_LIBRARY", None)
    r = _run("import flashport; print(flashport.__file__); print(flashport.library_path())", env)
    assert r.returncode == 0, r.stderr
    where, path = r.stdout.splitlines()
    if not where.startswith(os.path.join(REPO, "python")):
        pytest.skip("an installed flashport shadows the source tree")
    assert path == lib


def test_skip_helper_skips_only_unsupported():
    from conftest import skip_if_unsupported

    with pytest.raises(pytest.skip.Exception, match="FA_ERR_UNSUPPORTED"):
        with skip_if_unsupported("feature"):
            raise flashport.FlashportError(flashport.FA_ERR_UNSUPPORTED, "not yet")
    with pytest.raises(flashport.FlashportError):
        with skip_if_unsupported("feature"):
            raise flashport.FlashportError(flashport.FA_ERR_INVALID_ARGUMENT, "bad")
    with pytest.raises(AssertionError):
        with skip_if_unsupported("feature"):
            raise AssertionError("wrong numbers")
