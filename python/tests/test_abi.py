"""The ctypes mirror of flashport.h must match the C structs byte for byte: a small C program compiled
against the header prints every size and offset, and every enum value, and they are compared here."""
import ctypes
import os
import shutil
import subprocess
import tempfile

import pytest

import flashport
from flashport import _capi as C

from conftest import REPO

HEADER_DIR = os.environ.get("FLASHPORT_INCLUDE", os.path.join(REPO, "api"))

ENUMS = ["FA_OK", "FA_ERR_INVALID_ARGUMENT", "FA_ERR_UNSUPPORTED", "FA_ERR_OUT_OF_MEMORY", "FA_ERR_NO_DEVICE",
         "FA_ERR_BACKEND", "FA_ERR_INTERNAL", "FA_BACKEND_CPU", "FA_BACKEND_CUDA", "FA_BACKEND_HIP",
         "FA_BACKEND_OPENCL", "FA_DTYPE_F32", "FA_DTYPE_F16", "FA_DTYPE_BF16", "FA_DTYPE_F8_E4M3",
         "FA_DTYPE_F8_E5M2", "FA_ALIBI_NONE", "FA_ALIBI_PER_HEAD", "FA_ALIBI_PER_BATCH_HEAD", "FA_MAX_RANK"]


def _program():
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <flashport.h>", "int main(void) {"]
    for name, cls in C.STRUCTS.items():
        lines.append('printf("%s %%zu %%zu\\n", sizeof(%s), _Alignof(%s));' % (name, name, name))
        for field, _ in cls._fields_:
            lines.append('printf("%s.%s %%zu %%zu\\n", offsetof(%s, %s), sizeof(((%s *)0)->%s));'
                         % (name, field, name, field, name, field))
    for e in ENUMS:
        lines.append('printf("%s %%d\\n", (int)%s);' % (e, e))
    lines += ["return 0;", "}"]
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def c_layout():
    cc = os.environ.get("CC", "cc")
    if not shutil.which(cc):
        pytest.skip("no C compiler (%s) to check the ctypes mirror against flashport.h" % cc)
    if not os.path.exists(os.path.join(HEADER_DIR, "flashport.h")):
        pytest.skip("flashport.h not found in %s (set FLASHPORT_INCLUDE)" % HEADER_DIR)
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "layout.c")
        exe = os.path.join(tmp, "layout")
        with open(src, "w") as f:
            f.write(_program())
        r = subprocess.run([cc, "-std=c11", "-I", HEADER_DIR, src, "-o", exe], capture_output=True, text=True)
        assert r.returncode == 0, "the C layout program does not compile against flashport.h (a field the ctypes " \
                                  "mirror names is gone or renamed?):\n" + r.stderr
        out = subprocess.run([exe], capture_output=True, text=True, check=True).stdout
    table = {}
    for line in out.splitlines():
        parts = line.split()
        table[parts[0]] = tuple(int(x) for x in parts[1:])
    return table


@pytest.mark.parametrize("name", sorted(C.STRUCTS))
def test_struct_layout(c_layout, name):
    cls = C.STRUCTS[name]
    assert (ctypes.sizeof(cls), ctypes.alignment(cls)) == c_layout[name], \
        "%s: ctypes size/alignment %s, C %s: flashport.h changed, update flashport/_capi.py" % (
            name, (ctypes.sizeof(cls), ctypes.alignment(cls)), c_layout[name])
    for field, ftype in cls._fields_:
        off = getattr(cls, field).offset
        assert (off, ctypes.sizeof(ftype)) == c_layout["%s.%s" % (name, field)], \
            "%s.%s: ctypes offset/size %s, C %s" % (name, field, (off, ctypes.sizeof(ftype)),
                                                    c_layout["%s.%s" % (name, field)])


def test_enum_values(c_layout):
    for e in ENUMS:
        assert getattr(C, e) == c_layout[e][0], e


def test_library_functions_resolve():
    lib = C.lib()
    assert flashport.library_version().count(".") == 2
    for fn in ("fa_fwd", "fa_bwd", "fa_combine", "fa_plan_create", "fa_dropout_keep", "fa_device_count"):
        assert hasattr(lib, fn)
