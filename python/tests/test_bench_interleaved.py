"""bench/interleaved_cpu.py (flashport and torch SDPA call by call in one process) runs, prints one row per
point, and both sides computed the same attention (the script's own max |fp - torch| column)."""
import os
import subprocess
import sys

import pytest

from conftest import HAVE_TORCH, REPO

if not HAVE_TORCH:
    pytest.skip("torch is not importable", allow_module_level=True)


def test_interleaved_cpu_smoke():
    import flashport

    env = dict(os.environ, FLASHPORT_LIBRARY=flashport.library_path(), OMP_NUM_THREADS="1", FLASHPORT_TUNE="off")
    cmd = [sys.executable, os.path.join(REPO, "bench", "interleaved_cpu.py"), "--hdim", "32", "--seqlen", "96",
           "--heads", "2", "--pairs", "2"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout
    rows = [line.split() for line in proc.stdout.splitlines() if line.startswith(("fwd ", "fwd+bwd "))]
    assert [(r[0], r[5]) for r in rows] == [("fwd", "no"), ("fwd", "yes"), ("fwd+bwd", "no"), ("fwd+bwd", "yes")]
    for r in rows:
        assert float(r[6]) > 0 and float(r[7]) > 0 and float(r[8]) > 0  # both throughputs, the median ratio
        assert float(r[-1]) < 1e-5, proc.stdout  # fp32 outputs of both sides agree
