"""ctypes mirror of api/flashport.h and the loader for libflashport.

Every struct here must match the C header field for field; tests/test_abi.py compiles a small C program
against the header and compares sizes and offsets, so a change on either side fails loudly.
"""
import ctypes
import ctypes.util
import os
import sys
import threading

FA_MAX_RANK = 5

# fa_status
FA_OK = 0
FA_ERR_INVALID_ARGUMENT = 1
FA_ERR_UNSUPPORTED = 2
FA_ERR_OUT_OF_MEMORY = 3
FA_ERR_NO_DEVICE = 4
FA_ERR_BACKEND = 5
FA_ERR_INTERNAL = 6

# fa_backend_kind
FA_BACKEND_CPU = 0
FA_BACKEND_CUDA = 1
FA_BACKEND_HIP = 2
FA_BACKEND_OPENCL = 3

# fa_dtype
FA_DTYPE_F32 = 0
FA_DTYPE_F16 = 1
FA_DTYPE_BF16 = 2
FA_DTYPE_F8_E4M3 = 3
FA_DTYPE_F8_E5M2 = 4

# fa_alibi_mode
FA_ALIBI_NONE = 0
FA_ALIBI_PER_HEAD = 1
FA_ALIBI_PER_BATCH_HEAD = 2

_c_enum = ctypes.c_int


class fa_device_props(ctypes.Structure):
    _fields_ = [
        ("backend", _c_enum),
        ("index_in_backend", ctypes.c_int),
        ("name", ctypes.c_char * 128),
        ("arch", ctypes.c_char * 64),
        ("shared_mem_per_block", ctypes.c_int64),
        ("shared_mem_per_block_optin", ctypes.c_int64),
        ("shared_mem_per_cu", ctypes.c_int64),
        ("compute_units", ctypes.c_int),
        ("simd_width", ctypes.c_int),
        ("max_threads_per_block", ctypes.c_int),
        ("max_threads_per_cu", ctypes.c_int),
        ("registers_per_block", ctypes.c_int),
        ("memory_bytes", ctypes.c_int64),
        ("l1_cache_bytes", ctypes.c_int64),
        ("l2_cache_bytes", ctypes.c_int64),
        ("l3_cache_bytes", ctypes.c_int64),
    ]


class fa_tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", _c_enum),
        ("rank", ctypes.c_int),
        ("shape", ctypes.c_int64 * FA_MAX_RANK),
        ("stride", ctypes.c_int64 * FA_MAX_RANK),
    ]


class fa_attn_desc(ctypes.Structure):
    _fields_ = [
        ("dtype", _c_enum),
        ("batch", ctypes.c_int64),
        ("seqlen_q", ctypes.c_int64),
        ("seqlen_k", ctypes.c_int64),
        ("heads_q", ctypes.c_int64),
        ("heads_kv", ctypes.c_int64),
        ("head_dim_qk", ctypes.c_int64),
        ("head_dim_v", ctypes.c_int64),
        ("softmax_scale", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("window_left", ctypes.c_int64),
        ("window_right", ctypes.c_int64),
        ("softcap", ctypes.c_float),
        ("alibi", _c_enum),
        ("dropout_p", ctypes.c_float),
        ("varlen", ctypes.c_int),
        ("total_q", ctypes.c_int64),
        ("total_k", ctypes.c_int64),
        ("paged_kv", ctypes.c_int),
        ("page_size", ctypes.c_int64),
        ("num_pages", ctypes.c_int64),
        ("max_pages_per_seq", ctypes.c_int64),
        ("kv_cache_lengths", ctypes.c_int),
        ("seqlen_new", ctypes.c_int64),
        ("rotary_dim", ctypes.c_int64),
        ("rotary_interleaved", ctypes.c_int),
        ("rotary_seqlen", ctypes.c_int64),
        ("return_lse", ctypes.c_int),
        ("num_splits", ctypes.c_int),
        ("with_backward", ctypes.c_int),
        ("deterministic", ctypes.c_int),
    ]


class fa_tile_config(ctypes.Structure):
    _fields_ = [
        ("block_q", ctypes.c_int),
        ("block_kv", ctypes.c_int),
        ("warps", ctypes.c_int),
        ("stages", ctypes.c_int),
        ("num_splits", ctypes.c_int),
    ]


_i32p = ctypes.c_void_p  # const int32_t *: passed as raw addresses


class fa_fwd_args(ctypes.Structure):
    _fields_ = [
        ("q", fa_tensor),
        ("k", fa_tensor),
        ("v", fa_tensor),
        ("out", fa_tensor),
        ("lse", fa_tensor),
        ("alibi_slopes", fa_tensor),
        ("cu_seqlens_q", _i32p),
        ("cu_seqlens_k", _i32p),
        ("seqused_k", _i32p),
        ("block_table", _i32p),
        ("block_table_stride", ctypes.c_int64),
        ("dropout_seed", ctypes.c_uint64),
        ("dropout_offset", ctypes.c_uint64),
        ("k_new", fa_tensor),
        ("v_new", fa_tensor),
        ("rotary_cos", fa_tensor),
        ("rotary_sin", fa_tensor),
        ("workspace", ctypes.c_void_p),
        ("workspace_size", ctypes.c_int64),
    ]


class fa_bwd_args(ctypes.Structure):
    _fields_ = [
        ("q", fa_tensor),
        ("k", fa_tensor),
        ("v", fa_tensor),
        ("out", fa_tensor),
        ("dout", fa_tensor),
        ("lse", fa_tensor),
        ("dq", fa_tensor),
        ("dk", fa_tensor),
        ("dv", fa_tensor),
        ("alibi_slopes", fa_tensor),
        ("cu_seqlens_q", _i32p),
        ("cu_seqlens_k", _i32p),
        ("seqused_k", _i32p),
        ("dropout_seed", ctypes.c_uint64),
        ("dropout_offset", ctypes.c_uint64),
        ("workspace", ctypes.c_void_p),
        ("workspace_size", ctypes.c_int64),
    ]


class fa_combine_args(ctypes.Structure):
    _fields_ = [
        ("out_partial", fa_tensor),
        ("lse_partial", fa_tensor),
        ("out", fa_tensor),
        ("lse", fa_tensor),
    ]


STRUCTS = {
    "fa_device_props": fa_device_props,
    "fa_tensor": fa_tensor,
    "fa_attn_desc": fa_attn_desc,
    "fa_tile_config": fa_tile_config,
    "fa_fwd_args": fa_fwd_args,
    "fa_bwd_args": fa_bwd_args,
    "fa_combine_args": fa_combine_args,
}

fa_plan_p = ctypes.c_void_p

# ---------------------------------------------------------------------------------------------- loading

_LIB_NAMES = ("libflashport.so", "libflashport.so.0", "libflashport.dylib", "flashport.dll")


def _candidates():
    """Where libflashport is looked for, in order (env, package copy, repo build dirs, system)."""
    env = os.environ.get("FLASHPORT_LIBRARY")
    if env:
        yield env
        return
    here = os.path.dirname(os.path.abspath(__file__))
    for name in _LIB_NAMES:
        yield os.path.join(here, name)
    repo = os.path.dirname(os.path.dirname(here))  # python/flashport -> python -> repo root
    for build in ("build", "build-release", "build-sanitize"):
        for name in _LIB_NAMES:
            yield os.path.join(repo, build, name)
    found = ctypes.util.find_library("flashport")
    if found:
        yield found


_lib = None
_lib_path = None
_lock = threading.Lock()


class LibraryNotFound(OSError):
    pass


def _declare(lib):
    def fn(name, restype, *argtypes):
        f = getattr(lib, name)
        f.restype = restype
        f.argtypes = list(argtypes)

    c_status = ctypes.c_int
    fn("fa_status_string", ctypes.c_char_p, c_status)
    fn("fa_last_error", ctypes.c_char_p)
    fn("fa_version_string", ctypes.c_char_p)
    fn("fa_backend_name", ctypes.c_char_p, _c_enum)
    fn("fa_device_count", ctypes.c_int)
    fn("fa_device_get", c_status, ctypes.c_int, ctypes.POINTER(fa_device_props))
    fn("fa_device_best", ctypes.c_int)
    fn("fa_dtype_name", ctypes.c_char_p, _c_enum)
    fn("fa_dtype_size", ctypes.c_int, _c_enum)
    fn("fa_attn_desc_init", None, ctypes.POINTER(fa_attn_desc))
    fn("fa_dropout_keep", ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64, ctypes.c_int64,
       ctypes.c_int64, ctypes.c_int64, ctypes.c_float)
    fn("fa_plan_create", c_status, ctypes.POINTER(fa_plan_p), ctypes.c_int, ctypes.POINTER(fa_attn_desc))
    fn("fa_plan_create_with_config", c_status, ctypes.POINTER(fa_plan_p), ctypes.c_int,
       ctypes.POINTER(fa_attn_desc), ctypes.POINTER(fa_tile_config))
    fn("fa_plan_destroy", None, fa_plan_p)
    fn("fa_plan_workspace_size", ctypes.c_int64, fa_plan_p)
    fn("fa_plan_config", c_status, fa_plan_p, ctypes.POINTER(fa_tile_config))
    fn("fa_plan_describe", ctypes.c_size_t, fa_plan_p, ctypes.c_char_p, ctypes.c_size_t)
    fn("fa_plan_candidates", c_status, ctypes.c_int, ctypes.POINTER(fa_attn_desc), ctypes.POINTER(fa_tile_config),
       ctypes.c_int, ctypes.POINTER(ctypes.c_int))
    fn("fa_fwd", c_status, fa_plan_p, ctypes.POINTER(fa_fwd_args), ctypes.c_void_p)
    fn("fa_bwd", c_status, fa_plan_p, ctypes.POINTER(fa_bwd_args), ctypes.c_void_p)
    fn("fa_combine", c_status, ctypes.c_int, ctypes.POINTER(fa_combine_args), ctypes.c_void_p)


def lib():
    """The loaded libflashport (ctypes.CDLL), loading it on first use."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        tried = []
        for path in _candidates():
            if os.sep in path and not os.path.exists(path):
                tried.append(path + " (absent)")
                continue
            try:
                cand = ctypes.CDLL(path)
            except OSError as e:
                tried.append("%s (%s)" % (path, e))
                continue
            _declare(cand)
            _lib_path = path
            _lib = cand
            return _lib
        raise LibraryNotFound(
            "libflashport could not be loaded. Build it (cmake -S . -B build && cmake --build build) or set "
            "FLASHPORT_LIBRARY to the path of libflashport.so. Tried: " + "; ".join(tried))


def library_path():
    lib()
    return _lib_path


# ---------------------------------------------------------------------------------------------- errors

_STATUS_NAMES = {
    FA_OK: "FA_OK",
    FA_ERR_INVALID_ARGUMENT: "FA_ERR_INVALID_ARGUMENT",
    FA_ERR_UNSUPPORTED: "FA_ERR_UNSUPPORTED",
    FA_ERR_OUT_OF_MEMORY: "FA_ERR_OUT_OF_MEMORY",
    FA_ERR_NO_DEVICE: "FA_ERR_NO_DEVICE",
    FA_ERR_BACKEND: "FA_ERR_BACKEND",
    FA_ERR_INTERNAL: "FA_ERR_INTERNAL",
}


class FlashportError(RuntimeError):
    """A libflashport call failed. .status is the fa_status code, .status_name its enum name,
    .detail the library's fa_last_error() message, .call the C function that failed."""

    def __init__(self, status, detail, call=None):
        self.status = int(status)
        self.status_name = _STATUS_NAMES.get(self.status, "fa_status(%d)" % self.status)
        self.detail = detail
        self.call = call
        try:
            text = _decode(lib().fa_status_string(self.status))
        except Exception:  # pragma: no cover - only if the library vanished
            text = self.status_name
        self.status_string = text
        msg = "%s%s" % (call + ": " if call else "", text)
        if detail:
            msg += ": " + detail
        super().__init__(msg)


def _decode(b):
    return b.decode("utf-8", "replace") if b is not None else ""


def check(status, call):
    """Raise FlashportError for a non-FA_OK status, with fa_status_string + fa_last_error."""
    if status != FA_OK:
        raise FlashportError(status, _decode(lib().fa_last_error()), call)
