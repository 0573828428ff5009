"""flash_attn's Python functions, argument for argument, over libflashport.

Layouts are flash_attn's: q, k, v (batch, seqlen, nheads, headdim); varlen (total, nheads, headdim); the
softmax LSE fp32 (batch, nheads, seqlen_q), varlen (nheads, total_q). Inputs are numpy arrays (fp32, fp16)
or torch tensors (fp32, fp16, bf16); outputs are of the same kind. Torch tensors that require grad go
through a torch.autograd.Function whose backward is libflashport's fa_bwd.

return_attn_probs=True returns (out, softmax_lse, None): flash_attn's S_dmask is not produced.
"""
import numbers

from . import _arrays as A
from . import _core
from ._core import Problem


def _needs_autograd(*tensors):
    ts = [t for t in tensors if t is not None and A.is_torch(t)]
    if not ts:
        return False
    import torch

    return torch.is_grad_enabled() and any(t.requires_grad for t in ts)


def _attention(q, k, v, pr, return_lse):
    if pr.block_table is None and _needs_autograd(q, k, v):
        from . import _autograd

        return _autograd.attention(q, k, v, pr, return_lse)
    out, lse, _ = _core.forward(q, k, v, pr, return_lse=return_lse)
    return out, lse


def _result(out, lse, return_attn_probs):
    return (out, lse, None) if return_attn_probs else out


def _unbind(x, axis, n, name):
    if x.shape[axis] != n:
        raise ValueError("%s must have %d at dimension %d, got shape %s" % (name, n, axis, tuple(x.shape)))
    idx = [slice(None)] * len(x.shape)
    parts = []
    for i in range(n):
        idx[axis] = i
        parts.append(x[tuple(idx)])
    return parts


def flash_attn_func(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """q: (batch, seqlen_q, nheads, headdim); k: (batch, seqlen_k, nheads_k, headdim); v: (batch, seqlen_k,
    nheads_k, headdim_v). nheads % nheads_k == 0 (MQA/GQA). causal and window_size are aligned to the bottom
    right of the attention matrix. Returns out (batch, seqlen_q, nheads, headdim_v), or with
    return_attn_probs (out, softmax_lse (batch, nheads, seqlen_q) fp32, None)."""
    pr = Problem(dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic)
    out, lse = _attention(q, k, v, pr, return_attn_probs)
    return _result(out, lse, return_attn_probs)


def flash_attn_qkvpacked_func(qkv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                              softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """qkv: (batch, seqlen, 3, nheads, headdim). See flash_attn_func."""
    q, k, v = _unbind(qkv, 2, 3, "qkv")
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                           deterministic, return_attn_probs)


def flash_attn_kvpacked_func(q, kv, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
                             softcap=0.0, alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """q: (batch, seqlen_q, nheads, headdim); kv: (batch, seqlen_k, 2, nheads_k, headdim)."""
    k, v = _unbind(kv, 2, 2, "kv")
    return flash_attn_func(q, k, v, dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes,
                           deterministic, return_attn_probs)


def flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                           softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0, alibi_slopes=None,
                           deterministic=False, return_attn_probs=False, block_table=None):
    """q: (total_q, nheads, headdim); k, v: (total_k, nheads_k, headdim), or with block_table a page pool
    (num_blocks, page_block_size, nheads_k, headdim) and block_table (batch, max_blocks_per_seq) int32 (then
    cu_seqlens_k only gives each sequence's key count). cu_seqlens_q/k: (batch + 1,) int32 prefix sums.
    softmax_lse (with return_attn_probs): (nheads, total_q)."""
    pr = Problem(dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                 cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                 max_seqlen_k=max_seqlen_k, block_table=block_table)
    out, lse = _attention(q, k, v, pr, return_attn_probs)
    return _result(out, lse, return_attn_probs)


def flash_attn_varlen_qkvpacked_func(qkv, cu_seqlens, max_seqlen, dropout_p=0.0, softmax_scale=None, causal=False,
                                     window_size=(-1, -1), softcap=0.0, alibi_slopes=None, deterministic=False,
                                     return_attn_probs=False):
    """qkv: (total, 3, nheads, headdim)."""
    q, k, v = _unbind(qkv, 1, 3, "qkv")
    return flash_attn_varlen_func(q, k, v, cu_seqlens, cu_seqlens, max_seqlen, max_seqlen, dropout_p, softmax_scale,
                                  causal, window_size, softcap, alibi_slopes, deterministic, return_attn_probs)


def flash_attn_varlen_kvpacked_func(q, kv, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p=0.0,
                                    softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                                    alibi_slopes=None, deterministic=False, return_attn_probs=False):
    """q: (total_q, nheads, headdim); kv: (total_k, 2, nheads_k, headdim)."""
    k, v = _unbind(kv, 1, 2, "kv")
    return flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, dropout_p,
                                  softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                                  return_attn_probs)


def flash_attn_with_kvcache(q, k_cache, v_cache, k=None, v=None, rotary_cos=None, rotary_sin=None,
                            cache_seqlens=None, cache_batch_idx=None, cache_leftpad=None, block_table=None,
                            softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
                            rotary_interleaved=True, alibi_slopes=None, num_splits=0, return_softmax_lse=False):
    """Attention of q (batch, seqlen_q, nheads, headdim) over a KV cache: k_cache/v_cache (batch, seqlen_cache,
    nheads_k, headdim), or page pools (num_blocks, page_block_size, nheads_k, headdim) with block_table
    (batch, max_blocks_per_seq) int32. cache_seqlens: int or (batch,) int32, keys in use per sequence.

    With k, v (batch, seqlen_new, nheads_k, headdim), the new keys/values are written into the cache *in place*
    at positions cache_seqlens[b] .. cache_seqlens[b] + seqlen_new - 1 (k rotated when rotary_cos/rotary_sin
    (seqlen_ro, rotary_dim / 2) are given), and attention runs over cache_seqlens[b] + seqlen_new keys.
    q is rotated at positions cache_seqlens[b] + i when causal or windowed, else all at cache_seqlens[b].
    cache_seqlens itself is not modified. No backward pass (as flash_attn).

    Returns out, or (out, softmax_lse (batch, nheads, seqlen_q) fp32) with return_softmax_lse."""
    if cache_batch_idx is not None:
        raise NotImplementedError("flashport: cache_batch_idx is not supported; gather the cache rows first "
                                  "(k_cache[cache_batch_idx]) or use a paged cache with block_table")
    if cache_leftpad is not None:
        raise NotImplementedError("flashport: cache_leftpad is not supported")
    if isinstance(cache_seqlens, numbers.Integral):
        cache_seqlens = [cache_seqlens] * int(q.shape[0])
    pr = Problem(0.0, softmax_scale, causal, window_size, softcap, alibi_slopes, False, block_table=block_table,
                 seqused_k=cache_seqlens, rotary_cos=rotary_cos, rotary_sin=rotary_sin,
                 rotary_interleaved=rotary_interleaved, num_splits=num_splits)
    out, lse, _ = _core.forward(q, k_cache, v_cache, pr, return_lse=return_softmax_lse, k_new=k, v_new=v,
                                writable_kv=k is not None)
    return (out, lse) if return_softmax_lse else out


# ---------------------------------------------------------------------------------------------- low level


def fwd(q, k, v, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1), softcap=0.0,
        alibi_slopes=None, cu_seqlens_q=None, cu_seqlens_k=None, max_seqlen_q=None, max_seqlen_k=None,
        block_table=None, rng_state=None, deterministic=False):
    """The forward without autograd, for numpy users and tests: returns (out, softmax_lse, rng_state), where
    rng_state is the dropout (seed, offset) used (None without dropout); pass it to bwd()."""
    pr = Problem(dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                 cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                 max_seqlen_k=max_seqlen_k, block_table=block_table)
    return _core.forward(q, k, v, pr, return_lse=True, with_backward=block_table is None, rng_state=rng_state)


def bwd(dout, q, k, v, out, softmax_lse, dropout_p=0.0, softmax_scale=None, causal=False, window_size=(-1, -1),
        softcap=0.0, alibi_slopes=None, deterministic=False, rng_state=None, cu_seqlens_q=None, cu_seqlens_k=None,
        max_seqlen_q=None, max_seqlen_k=None):
    """The backward pass (fa_bwd): returns (dq, dk, dv) for the forward fwd() computed with the same
    arguments (rng_state: the one fwd() returned)."""
    pr = Problem(dropout_p, softmax_scale, causal, window_size, softcap, alibi_slopes, deterministic,
                 cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k, max_seqlen_q=max_seqlen_q,
                 max_seqlen_k=max_seqlen_k)
    return _core.backward(dout, q, k, v, out, softmax_lse, pr, rng_state)
