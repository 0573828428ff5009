"""flash_attn_with_kvcache: dense and paged caches, cache lengths, append of new keys/values (in place) and
rotary embedding (interleaved and half-split), against the float64 reference."""
import numpy as np
import pytest

import flashport
import reference as R
from conftest import make, skip_if_unsupported

DTYPES = ["float32", "float16"]


def rotary_tables(rng, seqlen_ro, rotary_dim):
    inv = 1.0 / (10000 ** (np.arange(0, rotary_dim, 2) / rotary_dim))
    ang = np.arange(seqlen_ro)[:, None] * inv[None, :] + rng.uniform(0, 0.1, (1, rotary_dim // 2))
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def kvcache_reference(q64, keys, vals, seqlens, p, knew=None, vnew=None, cos=None, sin=None, interleaved=True,
                      alibi=None, dtype=None):
    """keys/vals: per-sequence dense float64 caches (b, cap, hkv, d). Returns out, lse, and the rotated new keys
    (per sequence) as the reference computes them."""
    b, sq = q64.shape[:2]
    outs, lses, knew_rot = [], [], []
    for i in range(b):
        L = int(seqlens[i])
        kb, vb, qb = keys[i, :L], vals[i, :L], q64[i]
        if knew is not None:
            kn = knew[i]
            if cos is not None:
                pos = L + np.arange(kn.shape[0])
                kn = R.rotate(kn, cos, sin, pos, interleaved) if dtype is None else \
                    R.rotate_naive(kn, cos, sin, pos, interleaved, dtype)
            knew_rot.append(kn)
            kb = np.concatenate([kb, kn])
            vb = np.concatenate([vb, vnew[i]])
            if cos is not None:
                local = p.causal or tuple(p.window) != (-1, -1)
                pos = L + np.arange(sq) if local else np.full(sq, L)
                qb = R.rotate(qb, cos, sin, pos, interleaved) if dtype is None else \
                    R.rotate_naive(qb, cos, sin, pos, interleaved, dtype)
        slopes = None
        if alibi is not None:
            slopes = alibi if alibi.ndim == 1 else alibi[i]
        o, l = R.attention_seq(qb, kb, vb, p, i, slopes, dtype=dtype)
        outs.append(o)
        lses.append(l)
    return np.stack(outs), np.stack(lses), knew_rot


def paged(rng, kc, vc, page):
    """Scatter dense caches (b, cap, h, d) into shuffled page pools; returns pools and the block table."""
    b, cap = kc.shape[:2]
    per = cap // page
    n = b * per + 2
    perm = rng.permutation(n)[: b * per].reshape(b, per).astype(np.int32)
    kp = np.zeros((n,) + kc.shape[2:], kc.dtype).reshape(n, 1, *kc.shape[2:]).repeat(page, axis=1)
    vp = np.zeros((n,) + vc.shape[2:], vc.dtype).reshape(n, 1, *vc.shape[2:]).repeat(page, axis=1)
    for i in range(b):
        kp[perm[i]] = kc[i].reshape(per, page, *kc.shape[2:])
        vp[perm[i]] = vc[i].reshape(per, page, *vc.shape[2:])
    return kp, vp, perm


def unpage(pool, bt):
    return np.stack([pool[bt[i]].reshape(-1, *pool.shape[2:]) for i in range(bt.shape[0])])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["dense", "paged"])
@pytest.mark.parametrize("opts", [dict(), dict(causal=True), dict(window=(20, 0)), dict(softcap=4.0, alibi=True),
                                  dict(num_splits=3, causal=True), dict(num_splits=1)],
                         ids=lambda o: "-".join("%s%s" % kv for kv in o.items()) or "plain")
def test_kvcache_no_append(opts, layout, dtype, rng):
    b, sq, cap, hq, hkv, d = 3, 4, 96, 6, 2, 32
    q, q64 = make(rng, (b, sq, hq, d), dtype)
    kc, kc64 = make(rng, (b, cap, hkv, d), dtype)
    vc, vc64 = make(rng, (b, cap, hkv, d), dtype)
    seqlens = np.array([5, 96, 40], dtype=np.int32)
    alibi = rng.uniform(0.01, 0.3, hq).astype(np.float32) if opts.get("alibi") else None
    p = R.Params(causal=opts.get("causal", False), window=opts.get("window", (-1, -1)), softcap=opts.get("softcap", 0.0))
    kw = dict(cache_seqlens=seqlens, causal=p.causal, window_size=p.window, softcap=p.softcap, alibi_slopes=alibi,
              num_splits=opts.get("num_splits", 0), return_softmax_lse=True)
    if layout == "paged":
        kp, vp, bt = paged(rng, kc, vc, 32)
        kp0 = kp.copy()
        out, lse = flashport.flash_attn_with_kvcache(q, kp, vp, block_table=bt, **kw)
        np.testing.assert_array_equal(kp, kp0)
    else:
        out, lse = flashport.flash_attn_with_kvcache(q, kc, vc, **kw)
    assert out.shape == (b, sq, hq, d) and lse.shape == (b, hq, sq)
    ref_out, ref_lse, _ = kvcache_reference(q64, kc64, vc64, seqlens, p, alibi=alibi)
    nai_out, nai_lse, _ = kvcache_reference(q64, kc64, vc64, seqlens, p, alibi=alibi, dtype=dtype)
    R.assert_fa_rule("out", out, ref_out, nai_out, dtype)
    R.assert_fa_rule("lse", lse, ref_lse, nai_lse, "float32")


def test_kvcache_seqlens_int_and_none(rng):
    b, cap = 2, 50
    q, q64 = make(rng, (b, 3, 2, 16), "float32")
    kc, kc64 = make(rng, (b, cap, 2, 16), "float32")
    vc, vc64 = make(rng, (b, cap, 2, 16), "float32")
    p = R.Params(causal=True)
    out = flashport.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=17, causal=True)
    ref = kvcache_reference(q64, kc64, vc64, [17, 17], p)[0]
    nai = kvcache_reference(q64, kc64, vc64, [17, 17], p, dtype="float32")[0]
    R.assert_fa_rule("int cache_seqlens", out, ref, nai, "float32")
    out = flashport.flash_attn_with_kvcache(q, kc, vc, causal=True)  # whole cache
    ref = kvcache_reference(q64, kc64, vc64, [cap, cap], p)[0]
    nai = kvcache_reference(q64, kc64, vc64, [cap, cap], p, dtype="float32")[0]
    R.assert_fa_rule("no cache_seqlens", out, ref, nai, "float32")


def test_kvcache_unsupported_arguments(rng):
    q, _ = make(rng, (2, 1, 2, 16), "float32")
    kc, _ = make(rng, (2, 8, 2, 16), "float32")
    with pytest.raises(NotImplementedError, match="cache_batch_idx"):
        flashport.flash_attn_with_kvcache(q, kc, kc, cache_seqlens=3, cache_batch_idx=np.array([1, 0], np.int32))
    with pytest.raises(NotImplementedError, match="cache_leftpad"):
        flashport.flash_attn_with_kvcache(q, kc, kc, cache_seqlens=3, cache_leftpad=np.array([0, 0], np.int32))
    with pytest.raises(ValueError, match="cache_seqlens"):
        flashport.flash_attn_with_kvcache(q, kc, kc.copy(), k=q, v=q)
    with pytest.raises(ValueError, match="rotary"):
        cos = np.ones((8, 4), np.float32)
        flashport.flash_attn_with_kvcache(q, kc, kc, cache_seqlens=3, rotary_cos=cos, rotary_sin=cos)


ROTARY = [None, ("interleaved", 32), ("halves", 32), ("interleaved", 16), ("halves", 16)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layout", ["dense", "paged"])
@pytest.mark.parametrize("rotary", ROTARY, ids=lambda r: "norotary" if r is None else "%s%d" % r)
@pytest.mark.parametrize("mask", ["none", "causal", "window"])
def test_kvcache_append(mask, rotary, layout, dtype, rng):
    b, sq, sn, cap, hq, hkv, d = 2, 3, 3, 64, 4, 2, 32
    q, q64 = make(rng, (b, sq, hq, d), dtype)
    kc, kc64 = make(rng, (b, cap, hkv, d), dtype)
    vc, vc64 = make(rng, (b, cap, hkv, d), dtype)
    kn, kn64 = make(rng, (b, sn, hkv, d), dtype)
    vn, vn64 = make(rng, (b, sn, hkv, d), dtype)
    seqlens = np.array([14, 61], dtype=np.int32)  # crosses a page boundary; fills the cache exactly
    seqlens0 = seqlens.copy()
    p = R.Params(causal=mask == "causal", window=(7, 0) if mask == "window" else (-1, -1))
    cos = sin = None
    interleaved = True
    if rotary is not None:
        interleaved = rotary[0] == "interleaved"
        cos, sin = rotary_tables(rng, cap, rotary[1])
    kw = dict(k=kn, v=vn, rotary_cos=cos, rotary_sin=sin, cache_seqlens=seqlens, causal=p.causal,
              window_size=p.window, rotary_interleaved=interleaved, return_softmax_lse=True)
    with skip_if_unsupported("KV-cache append%s" % ("" if rotary is None else " + rotary")):
        if layout == "paged":
            kp, vp, bt = paged(rng, kc, vc, 16)
            out, lse = flashport.flash_attn_with_kvcache(q, kp, vp, block_table=bt, **kw)
            k_after, v_after = unpage(kp, bt), unpage(vp, bt)
        else:
            k_after, v_after = kc, vc  # updated in place
            out, lse = flashport.flash_attn_with_kvcache(q, kc, vc, **kw)
    np.testing.assert_array_equal(seqlens, seqlens0)  # cache_seqlens is not modified
    ref_out, ref_lse, ref_k = kvcache_reference(q64, kc64, vc64, seqlens, p, kn64, vn64, cos, sin, interleaved)
    nai_out, nai_lse, nai_k = kvcache_reference(q64, kc64, vc64, seqlens, p, kn64, vn64, cos, sin, interleaved,
                                                dtype=dtype)
    R.assert_fa_rule("out", out, ref_out, nai_out, dtype)
    R.assert_fa_rule("lse", lse, ref_lse, nai_lse, "float32")
    for i in range(b):
        L = seqlens[i]
        # Untouched rows keep their values bit for bit; new rows hold (rotated) k and v.
        np.testing.assert_array_equal(k_after[i, :L], kc64[i, :L].astype(dtype))
        np.testing.assert_array_equal(k_after[i, L + sn:], kc64[i, L + sn:].astype(dtype))
        np.testing.assert_array_equal(v_after[i, L + sn:], vc64[i, L + sn:].astype(dtype))
        np.testing.assert_array_equal(v_after[i, L:L + sn], vn[i])
        R.assert_fa_rule("k_cache[%d] new rows" % i, k_after[i, L:L + sn], ref_k[i], nai_k[i], dtype)


@pytest.mark.parametrize("num_splits", [0, 1, 2, 3, 5, 16])
def test_kvcache_num_splits(num_splits, rng):
    """Split-KV decode over a long cache (LSE combine); num_splits larger than the cache has KV tiles is a hint,
    as in flash_attn."""
    b, sq, cap, hq, hkv, d = 2, 1, 640, 8, 2, 64
    q, q64 = make(rng, (b, sq, hq, d), "float16")
    kc, kc64 = make(rng, (b, cap, hkv, d), "float16")
    vc, vc64 = make(rng, (b, cap, hkv, d), "float16")
    seqlens = np.array([640, 333], dtype=np.int32)
    out, lse = flashport.flash_attn_with_kvcache(q, kc, vc, cache_seqlens=seqlens, num_splits=num_splits,
                                                 return_softmax_lse=True)
    p = R.Params()
    ref_out, ref_lse, _ = kvcache_reference(q64, kc64, vc64, seqlens, p)
    nai_out, nai_lse, _ = kvcache_reference(q64, kc64, vc64, seqlens, p, dtype="float16")
    R.assert_fa_rule("out", out, ref_out, nai_out, "float16")
    R.assert_fa_rule("lse", lse, ref_lse, nai_lse, "float32")


@pytest.mark.parametrize("causal", [False, True])
def test_kvcache_append_into_empty_cache(causal, rng):
    """cache_seqlens 0: the new keys are the whole context (prefill through the cache)."""
    b, sq, cap, h, d = 2, 5, 16, 2, 32
    q, q64 = make(rng, (b, sq, h, d), "float16")
    kc, kc64 = make(rng, (b, cap, h, d), "float16")
    vc, vc64 = make(rng, (b, cap, h, d), "float16")
    kn, kn64 = make(rng, (b, sq, h, d), "float16")
    vn, vn64 = make(rng, (b, sq, h, d), "float16")
    cos, sin = rotary_tables(rng, cap, d)
    with skip_if_unsupported("KV-cache append + rotary"):
        out = flashport.flash_attn_with_kvcache(q, kc, vc, kn, vn, cos, sin, cache_seqlens=0, causal=causal,
                                                rotary_interleaved=False)
    p = R.Params(causal=causal)
    seqlens = [0, 0]
    ref = kvcache_reference(q64, kc64, vc64, seqlens, p, kn64, vn64, cos, sin, False)[0]
    nai = kvcache_reference(q64, kc64, vc64, seqlens, p, kn64, vn64, cos, sin, False, dtype="float16")[0]
    R.assert_fa_rule("out", out, ref, nai, "float16")
