import contextlib
import os
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)  # reference.py

# The installed package is preferred; from a source checkout, fall back to python/flashport.
try:
    import flashport  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.dirname(HERE))
    import flashport  # noqa: F401

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except Exception:  # ImportError, or a broken torch install
    HAVE_TORCH = False

needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch is not importable")


@contextlib.contextmanager
def skip_if_unsupported(feature):
    """Skip (with the library's reason) only while libflashport answers FA_ERR_UNSUPPORTED; any other
    failure propagates."""
    try:
        yield
    except flashport.FlashportError as e:
        if e.status == flashport.FA_ERR_UNSUPPORTED:
            pytest.skip("%s: libflashport returns FA_ERR_UNSUPPORTED (%s)" % (feature, e))
        raise


def make(rng, shape, dtype, scale=1.0):
    """Random numpy array of dtype ('float32' / 'float16') and its exact float64 value."""
    x = (rng.standard_normal(shape) * scale).astype(dtype)
    return x, x.astype(np.float64)


@pytest.fixture
def rng(request):
    seed = abs(hash(request.node.nodeid)) % (2 ** 32)
    return np.random.default_rng(seed)
