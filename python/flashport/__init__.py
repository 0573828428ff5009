"""flashport: exact FlashAttention (flash_attn's Python API) over the libflashport C library.

    from flashport import flash_attn_func
    out = flash_attn_func(q, k, v, causal=True)      # numpy arrays or torch tensors, (batch, seqlen, heads, dim)

The library is found through FLASHPORT_LIBRARY, then a copy inside this package, then the source tree's
build/ directory, then the system's library path.
"""
from ._capi import FlashportError, LibraryNotFound, library_path
from ._capi import (FA_OK, FA_ERR_INVALID_ARGUMENT, FA_ERR_UNSUPPORTED, FA_ERR_OUT_OF_MEMORY, FA_ERR_NO_DEVICE,
                    FA_ERR_BACKEND, FA_ERR_INTERNAL)
from ._core import Device, devices, plan_cache_info, clear_plan_cache, dropout_keep, dropout_mask
from .interface import (flash_attn_func, flash_attn_qkvpacked_func, flash_attn_kvpacked_func,
                        flash_attn_varlen_func, flash_attn_varlen_qkvpacked_func, flash_attn_varlen_kvpacked_func,
                        flash_attn_with_kvcache, fwd, bwd)

__version__ = "0.1.0"


def library_version():
    """libflashport's fa_version_string()."""
    from . import _capi

    return _capi._decode(_capi.lib().fa_version_string())


__all__ = [
    "flash_attn_func", "flash_attn_qkvpacked_func", "flash_attn_kvpacked_func", "flash_attn_varlen_func",
    "flash_attn_varlen_qkvpacked_func", "flash_attn_varlen_kvpacked_func", "flash_attn_with_kvcache", "fwd", "bwd",
    "FlashportError", "LibraryNotFound", "devices", "Device", "plan_cache_info", "clear_plan_cache",
    "dropout_keep", "dropout_mask", "library_path", "library_version",
    "FA_OK", "FA_ERR_INVALID_ARGUMENT", "FA_ERR_UNSUPPORTED", "FA_ERR_OUT_OF_MEMORY", "FA_ERR_NO_DEVICE",
    "FA_ERR_BACKEND", "FA_ERR_INTERNAL",
]
