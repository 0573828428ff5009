"""numpy arrays and torch tensors seen as fa_tensor: pointer, dtype, shape and strides in elements.

Inputs are passed with their own strides; only the last dimension must be contiguous (a copy is made
otherwise). Outputs are allocated here, of the same kind (numpy / torch, same device) as the inputs.
"""
import ctypes

import numpy as np

from . import _capi as C


def is_torch(x):
    return type(x).__module__.split(".")[0] == "torch" and hasattr(x, "data_ptr")


def _torch():
    import torch

    return torch


def _torch_dtype_map():
    torch = _torch()
    return {torch.float32: C.FA_DTYPE_F32, torch.float16: C.FA_DTYPE_F16, torch.bfloat16: C.FA_DTYPE_BF16}


def _numpy_fa_dtype(dt):
    if dt == np.float32:
        return C.FA_DTYPE_F32
    if dt == np.float16:
        return C.FA_DTYPE_F16
    if dt.name == "bfloat16" and dt.itemsize == 2:  # ml_dtypes.bfloat16, where installed
        return C.FA_DTYPE_BF16
    return None


class Arr(object):
    """One array as the C library sees it. .obj keeps the memory alive for the duration of a call."""

    __slots__ = ("obj", "ptr", "dtype", "shape", "strides", "kind", "device")

    def tensor(self):
        t = C.fa_tensor()
        t.data = self.ptr
        t.dtype = self.dtype
        t.rank = len(self.shape)
        for i, (n, s) in enumerate(zip(self.shape, self.strides)):
            t.shape[i] = n
            t.stride[i] = s
        return t


def _last_dim_ok(shape, strides):
    return len(shape) == 0 or shape[-1] <= 1 or strides[-1] == 1


def wrap(x, name, allowed=None, writable=False, copy_ok=True):
    """Describe x (numpy array or torch tensor) for the C library. allowed: set of fa_dtype codes (default
    fp32/fp16/bf16). writable: the library writes into x (no copy is allowed then)."""
    if allowed is None:
        allowed = (C.FA_DTYPE_F32, C.FA_DTYPE_F16, C.FA_DTYPE_BF16)
    a = Arr()
    if is_torch(x):
        torch = _torch()
        fa_dt = _torch_dtype_map().get(x.dtype)
        if fa_dt is None or fa_dt not in allowed:
            raise TypeError("%s has dtype %s; flashport takes %s" % (name, x.dtype, _allowed_names(allowed)))
        if x.is_sparse or getattr(x, "is_quantized", False):
            raise TypeError("%s must be a dense strided tensor" % name)
        t = x.detach()
        if not _last_dim_ok(tuple(t.shape), t.stride()):
            if writable or not copy_ok:
                raise ValueError("%s must have a contiguous last dimension (stride(-1) == 1), got strides %s"
                                 % (name, tuple(t.stride())))
            t = t.contiguous()
        a.obj = t
        a.ptr = t.data_ptr() if t.numel() else None
        a.dtype = fa_dt
        a.shape = tuple(int(n) for n in t.shape)
        a.strides = tuple(int(s) for s in t.stride())
        a.kind = "torch"
        a.device = t.device
        del torch
        return a
    if not isinstance(x, np.ndarray):
        raise TypeError("%s must be a numpy array or a torch tensor, got %s" % (name, type(x).__name__))
    fa_dt = _numpy_fa_dtype(x.dtype)
    if fa_dt is None or fa_dt not in allowed:
        raise TypeError("%s has dtype %s; flashport takes %s (bf16 through torch or ml_dtypes)"
                        % (name, x.dtype, _allowed_names(allowed)))
    if writable and not x.flags.writeable:
        raise ValueError("%s is read-only but is written in place" % name)
    item = x.dtype.itemsize
    ok = x.flags.aligned and all(s >= 0 and s % item == 0 for s in x.strides)
    if not ok or not _last_dim_ok(x.shape, [s // item for s in x.strides]):
        if writable or not copy_ok:
            raise ValueError("%s must have a contiguous last dimension and non-negative, aligned strides, got "
                             "byte strides %s" % (name, x.strides))
        x = np.ascontiguousarray(x)
    a.obj = x
    a.ptr = x.ctypes.data if x.size else None
    a.dtype = fa_dt
    a.shape = tuple(int(n) for n in x.shape)
    a.strides = tuple(int(s) // item for s in x.strides)
    a.kind = "numpy"
    a.device = None
    return a


_NAMES = {C.FA_DTYPE_F32: "float32", C.FA_DTYPE_F16: "float16", C.FA_DTYPE_BF16: "bfloat16"}


def _allowed_names(allowed):
    return "/".join(_NAMES.get(d, str(d)) for d in allowed)


def empty(like, shape, fa_dtype):
    """A new contiguous array of the kind and device of `like` (an Arr)."""
    a = Arr()
    shape = tuple(int(n) for n in shape)
    if like.kind == "torch":
        torch = _torch()
        tdt = {C.FA_DTYPE_F32: torch.float32, C.FA_DTYPE_F16: torch.float16, C.FA_DTYPE_BF16: torch.bfloat16}
        t = torch.empty(shape, dtype=tdt[fa_dtype], device=like.device)
        a.obj = t
        a.ptr = t.data_ptr() if t.numel() else None
        a.strides = tuple(int(s) for s in t.stride())
        a.device = t.device
    else:
        if fa_dtype == C.FA_DTYPE_BF16:
            ndt = like.obj.dtype  # ml_dtypes bfloat16
        else:
            ndt = {C.FA_DTYPE_F32: np.float32, C.FA_DTYPE_F16: np.float16}[fa_dtype]
        x = np.empty(shape, dtype=ndt)
        a.obj = x
        a.ptr = x.ctypes.data if x.size else None
        a.strides = tuple(int(s) // x.dtype.itemsize for s in x.strides)
        a.device = None
    a.kind = like.kind
    a.dtype = fa_dtype
    a.shape = shape
    return a


def int32_buffer(x, name, like, ndim=None):
    """x (int, sequence, numpy array or torch tensor) as a C-contiguous int32 array of the kind/device of
    `like`. Returns (keep_alive_object, address, shape)."""
    if is_torch(x):
        torch = _torch()
        t = x.detach()
        if t.dtype.is_floating_point:
            raise TypeError("%s must be an integer tensor (int32), got %s" % (name, t.dtype))
        dev = like.device if like.kind == "torch" else torch.device("cpu")
        t = t.to(device=dev, dtype=torch.int32).contiguous()
        if ndim is not None and t.dim() != ndim:
            raise ValueError("%s must have %d dimension(s), got shape %s" % (name, ndim, tuple(t.shape)))
        return t, t.data_ptr(), tuple(int(n) for n in t.shape)
    arr = np.asarray(x)
    if arr.dtype.kind not in "iu":
        raise TypeError("%s must hold integers (int32), got %s" % (name, arr.dtype))
    if ndim is not None and arr.ndim != ndim:
        raise ValueError("%s must have %d dimension(s), got shape %s" % (name, ndim, arr.shape))
    if like.kind == "torch":
        torch = _torch()
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.int32)).to(like.device)
        return t, t.data_ptr(), tuple(int(n) for n in t.shape)
    arr = np.ascontiguousarray(arr, dtype=np.int32)
    return arr, arr.ctypes.data, arr.shape


def float32_input(x, name, like):
    """x as an fp32 Arr of the kind/device of `like` (alibi slopes, rotary tables)."""
    if is_torch(x):
        torch = _torch()
        dev = like.device if like.kind == "torch" else torch.device("cpu")
        x = x.detach().to(device=dev, dtype=torch.float32)
        if x.dim() and x.stride(-1) != 1:
            x = x.contiguous()
        if like.kind != "torch":
            x = x.numpy()
    elif like.kind == "torch":
        torch = _torch()
        x = torch.as_tensor(np.asarray(x, dtype=np.float32), device=like.device)
    else:
        x = np.asarray(x, dtype=np.float32)
        if x.ndim and (x.strides[-1] != 4 or any(s < 0 for s in x.strides)):
            x = np.ascontiguousarray(x)
    return wrap(x, name, allowed=(C.FA_DTYPE_F32,))


def host_int32(obj):
    """A host numpy view of an int32 buffer from int32_buffer (copies from a GPU)."""
    if is_torch(obj):
        return obj.cpu().numpy()
    return obj


def void_p(addr):
    return ctypes.c_void_p(addr) if addr else None
