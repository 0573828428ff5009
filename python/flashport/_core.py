"""Problem description, device routing, plan cache and the fa_fwd / fa_bwd calls."""
import collections
import ctypes
import os
import threading

import numpy as np

from . import _arrays as A
from . import _capi as C

# ---------------------------------------------------------------------------------------------- devices


class Device(object):
    """One fa device: index (what fa_plan_create takes) and its fa_device_props as plain attributes."""

    def __init__(self, index, props):
        self.index = index
        self.backend = int(props.backend)
        self.backend_name = C._decode(C.lib().fa_backend_name(props.backend))
        self.index_in_backend = int(props.index_in_backend)
        self.name = props.name.decode("utf-8", "replace")
        self.arch = props.arch.decode("utf-8", "replace")
        for f, _ in C.fa_device_props._fields_:
            if f not in ("backend", "index_in_backend", "name", "arch"):
                setattr(self, f, int(getattr(props, f)))

    def __repr__(self):
        return "Device(%d, %s #%d, %r, %s)" % (self.index, self.backend_name, self.index_in_backend, self.name,
                                              self.arch)


_devices = None
_devices_lock = threading.Lock()


def devices():
    """Every device libflashport found (all backends), as Device objects."""
    global _devices
    if _devices is None:
        with _devices_lock:
            if _devices is None:
                lib = C.lib()
                found = []
                for i in range(lib.fa_device_count()):
                    p = C.fa_device_props()
                    C.check(lib.fa_device_get(i, ctypes.byref(p)), "fa_device_get")
                    found.append(Device(i, p))
                _devices = found
    return list(_devices)


def _device_for(like):
    """(fa device index, stream pointer) for the memory an Arr lives in."""
    if like.kind == "numpy" or like.device.type == "cpu":
        for d in devices():
            if d.backend == C.FA_BACKEND_CPU:
                return d.index, None
        raise C.FlashportError(C.FA_ERR_NO_DEVICE, "libflashport reports no CPU device", "fa_device_get")
    dev = like.device
    if dev.type != "cuda":
        raise RuntimeError("flashport: tensors on %s are not supported (CPU tensors, numpy arrays, or CUDA/ROCm "
                           "tensors with a flashport GPU backend)" % dev)
    torch = A._torch()
    kind = C.FA_BACKEND_HIP if getattr(torch.version, "hip", None) else C.FA_BACKEND_CUDA
    ordinal = dev.index if dev.index is not None else torch.cuda.current_device()
    for d in devices():
        if d.backend == kind and d.index_in_backend == ordinal:
            stream = torch.cuda.current_stream(dev).cuda_stream
            return d.index, (ctypes.c_void_p(stream) if stream else None)
    have = ", ".join("%s #%d" % (d.backend_name, d.index_in_backend) for d in devices()) or "none"
    raise RuntimeError(
        "flashport: the tensors are on %s, but libflashport has no %s device %d (devices found: %s). Install the "
        "%s backend plugin (libflashport_%s.so next to libflashport.so, or in FLASHPORT_PLUGIN_DIR; "
        "FLASHPORT_LOG=1 says why a backend is absent), or move the tensors to the CPU."
        % (dev, "HIP" if kind == C.FA_BACKEND_HIP else "CUDA", ordinal, have,
           "HIP" if kind == C.FA_BACKEND_HIP else "CUDA", "hip" if kind == C.FA_BACKEND_HIP else "cuda"))


# ---------------------------------------------------------------------------------------------- plans

_DESC_FIELDS = [f for f, _ in C.fa_attn_desc._fields_]


def new_desc():
    d = C.fa_attn_desc()
    C.lib().fa_attn_desc_init(ctypes.byref(d))
    return d


def desc_key(device, desc):
    return (device,) + tuple(getattr(desc, f) for f in _DESC_FIELDS)


class Plan(object):
    """An fa_plan, destroyed when the last reference goes."""

    def __init__(self, device, desc):
        self._lib = C.lib()
        self.device = device
        handle = C.fa_plan_p()
        C.check(self._lib.fa_plan_create(ctypes.byref(handle), device, ctypes.byref(desc)), "fa_plan_create")
        self.handle = handle

    def describe(self):
        n = self._lib.fa_plan_describe(self.handle, None, 0)
        buf = ctypes.create_string_buffer(n + 1)
        self._lib.fa_plan_describe(self.handle, buf, n + 1)
        return buf.value.decode("utf-8", "replace")

    def config(self):
        c = C.fa_tile_config()
        C.check(self._lib.fa_plan_config(self.handle, ctypes.byref(c)), "fa_plan_config")
        return {f: getattr(c, f) for f, _ in C.fa_tile_config._fields_}

    def workspace_size(self):
        return int(self._lib.fa_plan_workspace_size(self.handle))

    def __del__(self):
        h = getattr(self, "handle", None)
        if h is not None and h.value:
            try:
                self._lib.fa_plan_destroy(h)
            except Exception:  # interpreter shutdown
                pass
            self.handle = None


class _PlanCache(object):
    """Plans keyed by (device, every desc field); least recently used ones are dropped past `capacity`."""

    def __init__(self, capacity):
        self.capacity = capacity
        self.plans = collections.OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, device, desc, split_fallback=False):
        """The plan for (device, desc). split_fallback: if the backend refuses an explicit desc.num_splits > 1
        (FA_ERR_UNSUPPORTED: e.g. more splits than KV tiles), plan with num_splits=0 (the planner's choice)
        instead, as flash_attn treats num_splits as a hint; the result is cached under the original key."""
        key = desc_key(device, desc)
        with self.lock:
            plan = self.plans.get(key)
            if plan is not None:
                self.plans.move_to_end(key)
                self.hits += 1
                return plan
        try:
            plan = Plan(device, desc)  # outside the lock: planning may take a while (GPU JIT)
        except C.FlashportError as e:
            if not (split_fallback and e.status == C.FA_ERR_UNSUPPORTED and desc.num_splits > 1):
                raise
            auto = C.fa_attn_desc.from_buffer_copy(desc)
            auto.num_splits = 0
            plan = Plan(device, auto)
        with self.lock:
            self.misses += 1
            self.plans[key] = plan
            self.plans.move_to_end(key)
            while len(self.plans) > self.capacity:
                self.plans.popitem(last=False)
        return plan

    def clear(self):
        with self.lock:
            self.plans.clear()
            self.hits = self.misses = 0


plan_cache = _PlanCache(int(os.environ.get("FLASHPORT_PLAN_CACHE_SIZE", "256")))


def plan_cache_info():
    """{'plans': cached plans, 'hits': calls that reused one, 'misses': calls that created one}."""
    with plan_cache.lock:
        return {"plans": len(plan_cache.plans), "hits": plan_cache.hits, "misses": plan_cache.misses}


def clear_plan_cache():
    plan_cache.clear()


# ---------------------------------------------------------------------------------------------- problem


class Problem(object):
    """The non-tensor settings of one attention call (everything but q, k, v), shared by fwd and bwd."""

    __slots__ = ("dropout_p", "softmax_scale", "causal", "window_size", "softcap", "alibi_slopes",
                 "deterministic", "cu_seqlens_q", "cu_seqlens_k", "max_seqlen_q", "max_seqlen_k", "block_table",
                 "seqused_k", "rotary_cos", "rotary_sin", "rotary_interleaved", "num_splits")

    def __init__(self, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                 alibi_slopes=None, deterministic=False, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None,
                 max_seqlen_k=None, block_table=None, seqused_k=None, rotary_cos=None, rotary_sin=None,
                 rotary_interleaved=True, num_splits=0):
        if softmax_scale is not None and not softmax_scale > 0:
            raise ValueError("softmax_scale=%r must be > 0 (None = 1/sqrt(headdim))" % (softmax_scale,))
        if window_size is None:
            window_size = (-1, -1)
        if len(window_size) != 2:
            raise ValueError("window_size=%r must be a pair (left, right)" % (window_size,))
        self.dropout_p = float(dropout_p)
        self.softmax_scale = softmax_scale
        self.causal = bool(causal)
        self.window_size = (int(window_size[0]), int(window_size[1]))
        self.softcap = float(softcap)
        self.alibi_slopes = alibi_slopes
        self.deterministic = bool(deterministic)
        self.cu_seqlens_q = cu_seqlens_q
        self.cu_seqlens_k = cu_seqlens_k
        self.max_seqlen_q = max_seqlen_q
        self.max_seqlen_k = max_seqlen_k
        self.block_table = block_table
        self.seqused_k = seqused_k
        self.rotary_cos = rotary_cos
        self.rotary_sin = rotary_sin
        self.rotary_interleaved = bool(rotary_interleaved)
        self.num_splits = int(num_splits)

    @property
    def varlen(self):
        return self.cu_seqlens_q is not None


def _check_rank(arr, rank, name, layout):
    if len(arr.shape) != rank:
        raise ValueError("%s must be %s, got shape %s" % (name, layout, arr.shape))


class _Call(object):
    """Inputs wrapped for C, the desc built from them, and the extra buffers (kept alive here)."""

    def __init__(self, q, k, v, pr, k_new=None, v_new=None, writable_kv=False):
        self.q = A.wrap(q, "q")
        self.k = A.wrap(k, "k_cache" if writable_kv else "k", writable=writable_kv)
        self.v = A.wrap(v, "v_cache" if writable_kv else "v", writable=writable_kv)
        for x, n in ((self.k, "k"), (self.v, "v")):
            if x.kind != self.q.kind or x.device != self.q.device:
                raise ValueError("q and %s must both be numpy arrays or torch tensors on one device (q: %s %s, "
                                 "%s: %s %s)" % (n, self.q.kind, self.q.device, n, x.kind, x.device))
            if x.dtype != self.q.dtype:
                raise TypeError("q, k and v must share a dtype (q: %s, %s: %s)" % (
                    A._NAMES.get(self.q.dtype), n, A._NAMES.get(x.dtype)))
        self.pr = pr
        self.keep = []
        d = new_desc()
        d.dtype = self.q.dtype
        d.softmax_scale = float(pr.softmax_scale) if pr.softmax_scale is not None else 0.0
        d.causal = int(pr.causal)
        d.window_left, d.window_right = pr.window_size
        d.softcap = pr.softcap
        d.dropout_p = pr.dropout_p
        d.deterministic = int(pr.deterministic)
        d.num_splits = pr.num_splits
        self.cu_q = self.cu_k = self.seqused = self.block_table = None
        self.bt_stride = 0
        if pr.varlen:
            _check_rank(self.q, 3, "q", "(total_q, nheads, headdim) with cu_seqlens_q")
            self.cu_q = self._int32(pr.cu_seqlens_q, "cu_seqlens_q", 1)
            if pr.cu_seqlens_k is None:
                raise ValueError("cu_seqlens_k is required with cu_seqlens_q")
            self.cu_k = self._int32(pr.cu_seqlens_k, "cu_seqlens_k", 1)
            d.varlen = 1
            d.batch = self.cu_q[2][0] - 1
            if pr.max_seqlen_q is None or pr.max_seqlen_k is None:
                raise ValueError("max_seqlen_q and max_seqlen_k are required with varlen")
            d.seqlen_q = int(pr.max_seqlen_q)
            d.seqlen_k = int(pr.max_seqlen_k)
            d.total_q, d.heads_q, d.head_dim_qk = self.q.shape
        else:
            _check_rank(self.q, 4, "q", "(batch, seqlen_q, nheads, headdim)")
            d.batch, d.seqlen_q, d.heads_q, d.head_dim_qk = self.q.shape
        if pr.block_table is not None:
            _check_rank(self.k, 4, "k", "(num_blocks, page_block_size, nheads_k, headdim) with block_table")
            _check_rank(self.v, 4, "v", "(num_blocks, page_block_size, nheads_k, headdim_v) with block_table")
            bt = self._int32(pr.block_table, "block_table", 2)
            self.block_table = bt
            d.paged_kv = 1
            d.num_pages, d.page_size, d.heads_kv = self.k.shape[:3]
            d.max_pages_per_seq = bt[2][1]
            if not pr.varlen:
                d.seqlen_k = d.max_pages_per_seq * d.page_size
        elif pr.varlen:
            _check_rank(self.k, 3, "k", "(total_k, nheads_k, headdim) with cu_seqlens_k")
            _check_rank(self.v, 3, "v", "(total_k, nheads_k, headdim_v) with cu_seqlens_k")
            d.total_k, d.heads_kv = self.k.shape[:2]
        else:
            _check_rank(self.k, 4, "k", "(batch, seqlen_k, nheads_k, headdim)")
            _check_rank(self.v, 4, "v", "(batch, seqlen_k, nheads_k, headdim_v)")
            d.seqlen_k, d.heads_kv = self.k.shape[1:3]
        d.head_dim_v = self.v.shape[-1]
        if pr.seqused_k is not None:
            self.seqused = self._int32(pr.seqused_k, "cache_seqlens", 1)
            d.kv_cache_lengths = 1
        self.alibi = None
        if pr.alibi_slopes is not None:
            self.alibi = A.float32_input(pr.alibi_slopes, "alibi_slopes", self.q)
            if len(self.alibi.shape) == 1:
                d.alibi = C.FA_ALIBI_PER_HEAD
            elif len(self.alibi.shape) == 2:
                d.alibi = C.FA_ALIBI_PER_BATCH_HEAD
            else:
                raise ValueError("alibi_slopes must be (nheads,) or (batch_size, nheads), got shape %s"
                                 % (self.alibi.shape,))
        self.k_new = self.v_new = self.cos = self.sin = None
        if k_new is not None or v_new is not None:
            if k_new is None or v_new is None:
                raise ValueError("k and v must be given together")
            if self.seqused is None:
                raise ValueError("appending k/v to the cache needs cache_seqlens (where each sequence's new keys go)")
            self.k_new = A.wrap(k_new, "k")
            self.v_new = A.wrap(v_new, "v")
            _check_rank(self.k_new, 4, "k", "(batch_size, seqlen_new, nheads_k, headdim)")
            d.seqlen_new = self.k_new.shape[1]
        if pr.rotary_cos is not None or pr.rotary_sin is not None:
            if pr.rotary_cos is None or pr.rotary_sin is None:
                raise ValueError("rotary_cos and rotary_sin must be given together")
            if self.k_new is None:
                raise ValueError("rotary_cos/rotary_sin apply only when new k and v are passed in (as flash_attn)")
            self.cos = A.float32_input(pr.rotary_cos, "rotary_cos", self.q)
            self.sin = A.float32_input(pr.rotary_sin, "rotary_sin", self.q)
            _check_rank(self.cos, 2, "rotary_cos", "(seqlen_ro, rotary_dim / 2)")
            d.rotary_seqlen, half = self.cos.shape
            d.rotary_dim = 2 * half
            d.rotary_interleaved = int(pr.rotary_interleaved)
        self.desc = d
        self.device, self.stream = _device_for(self.q)

    def _int32(self, x, name, ndim):
        buf = A.int32_buffer(x, name, self.q, ndim)
        self.keep.append(buf[0])
        return buf

    def lse_shape(self):
        d = self.desc
        return (d.heads_q, d.total_q) if d.varlen else (d.batch, d.heads_q, d.seqlen_q)

    def out_shape(self):
        return self.q.shape[:-1] + (self.desc.head_dim_v,)

    def common(self, args):
        """Fields fa_fwd_args and fa_bwd_args share."""
        if self.alibi is not None:
            args.alibi_slopes = self.alibi.tensor()
        if self.cu_q is not None:
            args.cu_seqlens_q = self.cu_q[1]
            args.cu_seqlens_k = self.cu_k[1]
        if self.seqused is not None:
            args.seqused_k = self.seqused[1]


def _draw_seed(like):
    """A (seed, offset) pair from the RNG of the inputs' framework (torch's default generator, numpy's global
    RandomState), so torch.manual_seed / np.random.seed reproduce dropout."""
    if like.kind == "torch":
        torch = A._torch()
        w = [int(x) for x in torch.randint(0, 2 ** 32, (4,), dtype=torch.int64)]
    else:
        w = [int(x) for x in np.random.randint(0, 2 ** 32, size=4, dtype=np.uint64)]
    return (w[0] << 32 | w[1], w[2] << 32 | w[3])


def _plan(call, with_backward, return_lse):
    d = call.desc
    d.return_lse = int(return_lse)
    d.with_backward = int(with_backward)
    return plan_cache.get(call.device, d, split_fallback=not with_backward)


def forward(q, k, v, pr, return_lse=False, with_backward=False, rng_state=None, k_new=None, v_new=None,
            writable_kv=False):
    """Run fa_fwd. Returns (out, lse or None, (seed, offset) or None).

    with_backward: plan for a later backward (falls back to a forward-only plan while the backend lacks
    the backward pass, so that the error surfaces in the backward call, not here)."""
    call = _Call(q, k, v, pr, k_new=k_new, v_new=v_new, writable_kv=writable_kv)
    return_lse = return_lse or with_backward
    if with_backward:
        try:
            plan = _plan(call, True, return_lse)
        except C.FlashportError as e:
            if e.status != C.FA_ERR_UNSUPPORTED:
                raise
            plan = _plan(call, False, return_lse)
    else:
        plan = _plan(call, False, return_lse)
    out = A.empty(call.q, call.out_shape(), call.q.dtype)
    lse = A.empty(call.q, call.lse_shape(), C.FA_DTYPE_F32) if return_lse else None
    args = C.fa_fwd_args()
    args.q, args.k, args.v, args.out = call.q.tensor(), call.k.tensor(), call.v.tensor(), out.tensor()
    if lse is not None:
        args.lse = lse.tensor()
    call.common(args)
    if call.block_table is not None:
        args.block_table = call.block_table[1]
        args.block_table_stride = 0
    if call.k_new is not None:
        args.k_new, args.v_new = call.k_new.tensor(), call.v_new.tensor()
    if call.cos is not None:
        args.rotary_cos, args.rotary_sin = call.cos.tensor(), call.sin.tensor()
    if pr.dropout_p > 0:
        rng_state = tuple(rng_state) if rng_state is not None else _draw_seed(call.q)
        args.dropout_seed, args.dropout_offset = rng_state
    else:
        rng_state = None
    C.check(C.lib().fa_fwd(plan.handle, ctypes.byref(args), call.stream), "fa_fwd")
    return out.obj, (lse.obj if lse is not None else None), rng_state


def backward(dout, q, k, v, out, lse, pr, rng_state=None):
    """Run fa_bwd (plan with desc.with_backward=1). Returns (dq, dk, dv) of the inputs' kind and dtype."""
    call = _Call(q, k, v, pr)
    if call.desc.paged_kv:
        raise ValueError("the backward pass takes dense or varlen k/v, not a paged cache (block_table)")
    if pr.dropout_p > 0 and rng_state is None:
        raise ValueError("dropout_p > 0 needs the forward's rng_state (seed, offset)")
    plan = _plan(call, True, True)
    o = A.wrap(out, "out")
    do = A.wrap(dout, "dout")
    if do.dtype != call.q.dtype:
        do = A.wrap(_cast_like(dout, out), "dout")
    l = A.wrap(lse, "softmax_lse", allowed=(C.FA_DTYPE_F32,))
    dq = A.empty(call.q, call.q.shape, call.q.dtype)
    dk = A.empty(call.q, call.k.shape, call.q.dtype)
    dv = A.empty(call.q, call.v.shape, call.q.dtype)
    args = C.fa_bwd_args()
    args.q, args.k, args.v = call.q.tensor(), call.k.tensor(), call.v.tensor()
    args.out, args.dout, args.lse = o.tensor(), do.tensor(), l.tensor()
    args.dq, args.dk, args.dv = dq.tensor(), dk.tensor(), dv.tensor()
    call.common(args)
    if pr.dropout_p > 0:
        args.dropout_seed, args.dropout_offset = rng_state
    C.check(C.lib().fa_bwd(plan.handle, ctypes.byref(args), call.stream), "fa_bwd")
    return dq.obj, dk.obj, dv.obj


def _cast_like(x, ref):
    if A.is_torch(x):
        return x.to(ref.dtype)
    return np.asarray(x).astype(ref.dtype)


def dropout_keep(seed, offset, batch, head, row, col, dropout_p):
    """The library's dropout mask (fa_dropout_keep): 1 = keep."""
    return int(C.lib().fa_dropout_keep(seed, offset, batch, head, row, col, dropout_p))


def dropout_mask(seed, offset, batch, head, rows, cols, dropout_p):
    """fa_dropout_keep over a (rows, cols) grid for one (batch, query head), as a bool numpy array."""
    f = C.lib().fa_dropout_keep
    m = np.empty((rows, cols), dtype=bool)
    p = ctypes.c_float(dropout_p)
    for i in range(rows):
        for j in range(cols):
            m[i, j] = f(seed, offset, batch, head, i, j, p)
    return m
