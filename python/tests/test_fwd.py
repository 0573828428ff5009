"""Forward pass through flash_attn's functions on numpy arrays, against the float64 reference under
FlashAttention's rule (max error <= 2x a naive same-precision implementation's error + rounding floor)."""
import numpy as np
import pytest

import flashport
import reference as R
from conftest import make

DTYPES = ["float32", "float16"]

# b, sq, sk, hq, hkv, d, dv, causal, window, softcap, alibi, scale
CASES = [
    dict(b=2, sq=33, sk=47, hq=4, hkv=4, d=32, dv=32),
    dict(b=2, sq=33, sk=47, hq=4, hkv=4, d=32, dv=32, causal=True),
    dict(b=1, sq=70, sk=20, hq=2, hkv=2, d=16, dv=16, causal=True),            # sq > sk: rows that see no key
    dict(b=2, sq=40, sk=64, hq=6, hkv=2, d=64, dv=64, causal=True),            # GQA
    dict(b=1, sq=17, sk=90, hq=4, hkv=1, d=40, dv=24),                         # MQA, dv != d
    dict(b=2, sq=64, sk=64, hq=2, hkv=2, d=32, dv=32, window=(8, 4)),
    dict(b=2, sq=30, sk=64, hq=2, hkv=1, d=32, dv=32, window=(16, 0)),
    dict(b=1, sq=48, sk=48, hq=2, hkv=2, d=32, dv=32, causal=True, window=(10, -1)),
    dict(b=2, sq=32, sk=50, hq=4, hkv=2, d=32, dv=32, softcap=5.0),
    dict(b=2, sq=32, sk=50, hq=4, hkv=4, d=32, dv=32, alibi="head", causal=True),
    dict(b=2, sq=25, sk=41, hq=4, hkv=2, d=32, dv=32, alibi="batch"),
    dict(b=1, sq=64, sk=128, hq=2, hkv=2, d=128, dv=128, scale=0.3, causal=True, softcap=2.0),
    dict(b=3, sq=1, sk=200, hq=8, hkv=2, d=64, dv=64),                          # decode shape
]


def case_id(c):
    return "-".join("%s%s" % (k, v) for k, v in c.items())


def run_case(c, dtype, rng, return_lse=True):
    q, q64 = make(rng, (c["b"], c["sq"], c["hq"], c["d"]), dtype)
    k, k64 = make(rng, (c["b"], c["sk"], c["hkv"], c["d"]), dtype)
    v, v64 = make(rng, (c["b"], c["sk"], c["hkv"], c["dv"]), dtype)
    alibi = None
    if c.get("alibi") == "head":
        alibi = rng.uniform(0.01, 0.5, c["hq"]).astype(np.float32)
    elif c.get("alibi") == "batch":
        alibi = rng.uniform(0.01, 0.5, (c["b"], c["hq"])).astype(np.float32)
    p = R.Params(scale=c.get("scale"), causal=c.get("causal", False), window=c.get("window", (-1, -1)),
                 softcap=c.get("softcap", 0.0))
    out, lse, s_dmask = flashport.flash_attn_func(q, k, v, softmax_scale=p.scale, causal=p.causal,
                                                  window_size=p.window, softcap=p.softcap, alibi_slopes=alibi,
                                                  return_attn_probs=True)
    assert s_dmask is None
    assert out.dtype == np.dtype(dtype) and out.shape == (c["b"], c["sq"], c["hq"], c["dv"])
    assert lse.dtype == np.float32 and lse.shape == (c["b"], c["hq"], c["sq"])
    ref_out, ref_lse = R.attention(q64, k64, v64, p, alibi=alibi)
    nai_out, nai_lse = R.attention(q64, k64, v64, p, alibi=alibi, dtype=dtype)
    R.assert_fa_rule("out", out, ref_out, nai_out, dtype)
    R.assert_fa_rule("lse", lse, ref_lse, nai_lse, "float32")
    # Rows that see no key: output exactly 0, LSE -inf.
    empty = np.isneginf(ref_lse)
    assert np.array_equal(np.isneginf(lse), empty)
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_flash_attn_func(c, dtype, rng):
    run_case(c, dtype, rng)


def test_default_return_is_out_only(rng):
    q, _ = make(rng, (1, 8, 2, 16), "float32")
    out = flashport.flash_attn_func(q, q, q)
    assert isinstance(out, np.ndarray) and out.shape == q.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_inputs(dtype, rng):
    """Views with free strides are passed as they are; a non-contiguous last dim is copied."""
    b, s, h, d = 2, 24, 3, 32
    big, big64 = make(rng, (b, s, 3, h, 2 * d), dtype)
    q, k, v = big[:, :, 0, :, :d], big[:, :, 1, :, d:], big[:, :, 2, :, ::2]   # v: last-dim stride 2
    q64, k64, v64 = big64[:, :, 0, :, :d], big64[:, :, 1, :, d:], big64[:, :, 2, :, ::2]
    assert not q.flags.c_contiguous and v.strides[-1] != v.itemsize
    p = R.Params(causal=True)
    out, lse, _ = flashport.flash_attn_func(q, k, v, causal=True, return_attn_probs=True)
    ref_out, ref_lse = R.attention(q64, k64, v64, p)
    nai_out, _ = R.attention(q64, k64, v64, p, dtype=dtype)
    R.assert_fa_rule("out", out, ref_out, nai_out, dtype)
    # A transposed layout (batch, heads, seqlen, dim) viewed as (batch, seqlen, heads, dim).
    qt = np.ascontiguousarray(q.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)
    out2 = flashport.flash_attn_func(qt, k, v, causal=True)
    np.testing.assert_array_equal(out2, out)


@pytest.mark.parametrize("dtype", DTYPES)
def test_qkvpacked_and_kvpacked(dtype, rng):
    qkv, qkv64 = make(rng, (2, 20, 3, 4, 32), dtype)
    p = R.Params(causal=True)
    out = flashport.flash_attn_qkvpacked_func(qkv, causal=True)
    ref, _ = R.attention(qkv64[:, :, 0], qkv64[:, :, 1], qkv64[:, :, 2], p)
    nai, _ = R.attention(qkv64[:, :, 0], qkv64[:, :, 1], qkv64[:, :, 2], p, dtype=dtype)
    R.assert_fa_rule("qkvpacked", out, ref, nai, dtype)
    q, q64 = make(rng, (2, 9, 4, 32), dtype)
    kv, kv64 = make(rng, (2, 20, 2, 2, 32), dtype)
    out = flashport.flash_attn_kvpacked_func(q, kv, window_size=(3, 3))
    p = R.Params(window=(3, 3))
    ref, _ = R.attention(q64, kv64[:, :, 0], kv64[:, :, 1], p)
    nai, _ = R.attention(q64, kv64[:, :, 0], kv64[:, :, 1], p, dtype=dtype)
    R.assert_fa_rule("kvpacked", out, ref, nai, dtype)


def _varlen_inputs(rng, dtype, lens_q, lens_k, hq, hkv, d, dv):
    cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    q, q64 = make(rng, (cu_q[-1], hq, d), dtype)
    k, k64 = make(rng, (cu_k[-1], hkv, d), dtype)
    v, v64 = make(rng, (cu_k[-1], hkv, dv), dtype)
    return cu_q, cu_k, (q, k, v), (q64, k64, v64)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(), dict(causal=True), dict(window=(6, 2)), dict(softcap=3.0, causal=True),
                                  dict(alibi="head", causal=True), dict(alibi="batch")], ids=case_id)
def test_varlen(opts, dtype, rng):
    lens_q, lens_k = [5, 0, 33, 17], [9, 4, 33, 60]
    hq, hkv = 4, 2
    cu_q, cu_k, (q, k, v), (q64, k64, v64) = _varlen_inputs(rng, dtype, lens_q, lens_k, hq, hkv, 32, 32)
    alibi = None
    if opts.get("alibi") == "head":
        alibi = rng.uniform(0.01, 0.5, hq).astype(np.float32)
    elif opts.get("alibi") == "batch":
        alibi = rng.uniform(0.01, 0.5, (len(lens_q), hq)).astype(np.float32)
    p = R.Params(causal=opts.get("causal", False), window=opts.get("window", (-1, -1)),
                 softcap=opts.get("softcap", 0.0))
    out, lse, _ = flashport.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=p.causal,
                                                   window_size=p.window, softcap=p.softcap, alibi_slopes=alibi,
                                                   return_attn_probs=True)
    assert lse.shape == (hq, cu_q[-1])
    ref_out, ref_lse = R.attention(q64, k64, v64, p, alibi=alibi, cu_q=cu_q, cu_k=cu_k)
    nai_out, nai_lse = R.attention(q64, k64, v64, p, alibi=alibi, cu_q=cu_q, cu_k=cu_k, dtype=dtype)
    R.assert_fa_rule("out", out, ref_out, nai_out, dtype)
    R.assert_fa_rule("lse", lse, ref_lse, nai_lse, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
def test_varlen_packed(dtype, rng):
    lens = [7, 30, 1]
    cu = np.concatenate([[0], np.cumsum(lens)]).astype(np.int32)
    qkv, qkv64 = make(rng, (cu[-1], 3, 2, 32), dtype)
    out = flashport.flash_attn_varlen_qkvpacked_func(qkv, cu, max(lens), causal=True)
    p = R.Params(causal=True)
    ref, _ = R.attention(qkv64[:, 0], qkv64[:, 1], qkv64[:, 2], p, cu_q=cu, cu_k=cu)
    nai, _ = R.attention(qkv64[:, 0], qkv64[:, 1], qkv64[:, 2], p, cu_q=cu, cu_k=cu, dtype=dtype)
    R.assert_fa_rule("varlen qkvpacked", out, ref, nai, dtype)
    q, q64 = make(rng, (cu[-1], 4, 32), dtype)
    kv, kv64 = make(rng, (cu[-1], 2, 2, 32), dtype)
    out = flashport.flash_attn_varlen_kvpacked_func(q, kv, cu, cu, max(lens), max(lens))
    ref, _ = R.attention(q64, kv64[:, 0], kv64[:, 1], R.Params(), cu_q=cu, cu_k=cu)
    nai, _ = R.attention(q64, kv64[:, 0], kv64[:, 1], R.Params(), cu_q=cu, cu_k=cu, dtype=dtype)
    R.assert_fa_rule("varlen kvpacked", out, ref, nai, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("causal", [False, True])
def test_varlen_paged(causal, dtype, rng):
    """flash_attn_varlen_func with block_table: k/v are page pools; cu_seqlens_k gives each key count."""
    lens_q, lens_k = [3, 16, 1], [40, 16, 77]
    page, hq, hkv, d = 16, 4, 2, 32
    cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    max_pages = -(-max(lens_k) // page)
    num_pages = len(lens_k) * max_pages + 3
    kp, kp64 = make(rng, (num_pages, page, hkv, d), dtype)
    vp, vp64 = make(rng, (num_pages, page, hkv, d), dtype)
    bt = rng.permutation(num_pages)[: len(lens_k) * max_pages].reshape(len(lens_k), max_pages).astype(np.int32)
    q, q64 = make(rng, (cu_q[-1], hq, d), dtype)
    out, lse, _ = flashport.flash_attn_varlen_func(q, kp, vp, cu_q, cu_k, max(lens_q), max(lens_k), causal=causal,
                                                   return_attn_probs=True, block_table=bt)
    # Dense copies of each sequence's keys for the reference.
    k64 = np.concatenate([kp64[bt[b]].reshape(-1, hkv, d)[: lens_k[b]] for b in range(len(lens_k))])
    v64 = np.concatenate([vp64[bt[b]].reshape(-1, hkv, d)[: lens_k[b]] for b in range(len(lens_k))])
    p = R.Params(causal=causal)
    ref_out, ref_lse = R.attention(q64, k64, v64, p, cu_q=cu_q, cu_k=cu_k)
    nai_out, nai_lse = R.attention(q64, k64, v64, p, cu_q=cu_q, cu_k=cu_k, dtype=dtype)
    R.assert_fa_rule("out", out, ref_out, nai_out, dtype)
    R.assert_fa_rule("lse", lse, ref_lse, nai_lse, "float32")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(), dict(causal=True, hkv=2), dict(window=(5, 5)), dict(varlen=True)],
                         ids=case_id)
def test_dropout(opts, dtype, rng):
    """Dropout against the reference using the library's public mask (fa_dropout_keep through ctypes)."""
    pd = 0.17
    hq, hkv = 4, opts.get("hkv", 4)
    p = R.Params(causal=opts.get("causal", False), window=opts.get("window", (-1, -1)), dropout_p=pd,
                 rng_state=(0x123456789ABCDEF0, 0xFEDCBA9876543210))
    if opts.get("varlen"):
        lens_q, lens_k = [6, 21], [30, 21]
        cu_q, cu_k, (q, k, v), (q64, k64, v64) = _varlen_inputs(rng, dtype, lens_q, lens_k, hq, hkv, 32, 32)
        vl = dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max(lens_q), max_seqlen_k=max(lens_k))
        rl = dict(cu_q=cu_q, cu_k=cu_k)
    else:
        q, q64 = make(rng, (2, 24, hq, 32), dtype)
        k, k64 = make(rng, (2, 37, hkv, 32), dtype)
        v, v64 = make(rng, (2, 37, hkv, 32), dtype)
        vl, rl = {}, {}
    out, lse, rng_state = flashport.fwd(q, k, v, dropout_p=pd, causal=p.causal, window_size=p.window,
                                        rng_state=p.rng_state, **vl)
    assert rng_state == p.rng_state
    ref_out, ref_lse = R.attention(q64, k64, v64, p, **rl)
    nai_out, _ = R.attention(q64, k64, v64, p, dtype=dtype, **rl)
    R.assert_fa_rule("out", out, ref_out, nai_out, dtype)
    # The LSE is dropout's input, not affected by it.
    p0 = R.Params(causal=p.causal, window=p.window)
    ref_lse0 = R.attention(q64, k64, v64, p0, **rl)[1]
    R.assert_fa_rule("lse", lse, ref_lse0, R.attention(q64, k64, v64, p0, dtype="float32", **rl)[1], "float32")
    # Some values are really dropped (and not all).
    nodrop = flashport.fwd(q, k, v, causal=p.causal, window_size=p.window, **vl)[0]
    assert not np.allclose(out.astype(np.float64), nodrop.astype(np.float64))


def test_dropout_seed_from_numpy_rng(rng):
    q, _ = make(rng, (1, 16, 2, 32), "float32")
    np.random.seed(1234)
    a = flashport.flash_attn_func(q, q, q, dropout_p=0.3)
    b = flashport.flash_attn_func(q, q, q, dropout_p=0.3)
    np.random.seed(1234)
    c = flashport.flash_attn_func(q, q, q, dropout_p=0.3)
    assert not np.array_equal(a, b), "each call draws a new seed"
    np.testing.assert_array_equal(a, c)
    # Without dropout no random number is drawn.
    np.random.seed(7)
    flashport.flash_attn_func(q, q, q)
    x = np.random.randint(1 << 30)
    np.random.seed(7)
    assert np.random.randint(1 << 30) == x


def test_dropout_keep_matches_mask():
    m = flashport.dropout_mask(5, 9, 1, 2, 4, 11, 0.5)
    assert m.shape == (4, 11)
    assert all(m[i, j] == bool(flashport.dropout_keep(5, 9, 1, 2, i, j, 0.5)) for i in range(4) for j in range(11))
    assert flashport.dropout_keep(5, 9, 1, 2, 0, 0, 0.0) == 1
    frac = flashport.dropout_mask(1, 2, 0, 0, 64, 64, 0.25).mean()
    assert 0.7 < frac < 0.8
