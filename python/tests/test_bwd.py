"""Backward pass (fa_bwd) through flashport.fwd / flashport.bwd on numpy arrays, against float64 gradients
under FlashAttention's backward rule (max error <= 3x a naive same-precision implementation's + floor).
Skipped, with the library's reason, only while libflashport answers FA_ERR_UNSUPPORTED."""
import numpy as np
import pytest

import flashport
import reference as R
from conftest import make, skip_if_unsupported

DTYPES = ["float32", "float16"]

CASES = [
    dict(b=2, sq=33, sk=47, hq=4, hkv=4, d=32),
    dict(b=2, sq=33, sk=47, hq=4, hkv=4, d=32, causal=True),
    dict(b=1, sq=50, sk=20, hq=2, hkv=2, d=16, causal=True),               # rows that see no key
    dict(b=2, sq=40, sk=64, hq=6, hkv=2, d=64, causal=True),               # GQA: dk/dv summed over the group
    dict(b=1, sq=17, sk=70, hq=4, hkv=1, d=40, dv=24),                     # MQA, dv != d
    dict(b=2, sq=48, sk=48, hq=2, hkv=2, d=32, window=(8, 4)),
    dict(b=2, sq=32, sk=50, hq=4, hkv=2, d=32, softcap=5.0),
    dict(b=2, sq=32, sk=50, hq=4, hkv=4, d=32, alibi="head", causal=True),
    dict(b=2, sq=25, sk=41, hq=4, hkv=2, d=32, alibi="batch"),
    dict(b=2, sq=24, sk=37, hq=4, hkv=2, d=32, dropout=0.2),
    dict(b=1, sq=30, sk=30, hq=2, hkv=2, d=32, dropout=0.1, causal=True, softcap=3.0),
    dict(b=1, sq=64, sk=64, hq=2, hkv=2, d=64, deterministic=True, causal=True),
]


def case_id(c):
    return "-".join("%s%s" % kv for kv in c.items())


def check_grads(name, got, ref, naive, dtype, floors):
    """3x rule with the floors of R.grad_floors (assert_fa_rule adds its own rounding floor once more: the
    floors given here are the extra LSE term only)."""
    for g, r, n, w, f in zip(got, ref, naive, ("dq", "dk", "dv"), floors):
        assert g.shape == r.shape and g.dtype == np.dtype(dtype), (w, g.shape, g.dtype)
        R.assert_fa_rule("%s %s" % (name, w), g, r, n, dtype, factor=3.0, extra_floor=f - R.floor_of(dtype, r))


def reference_grads(q64, k64, v64, do64, p, dtype, **kw):
    terms = {}
    ref = R.attention(q64, k64, v64, p, dout=do64, terms=terms, **kw)
    nai = R.attention(q64, k64, v64, p, dout=do64, dtype=dtype, **kw)
    floors = R.grad_floors(dtype, ref[2], ref[1], q64, k64, do64, terms)
    return ref, nai, floors


def inputs(c, dtype, rng, varlen=None):
    dv = c.get("dv", c["d"])
    if varlen:
        lens_q, lens_k = varlen
        cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
        cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
        shapes = [(cu_q[-1], c["hq"], c["d"]), (cu_k[-1], c["hkv"], c["d"]), (cu_k[-1], c["hkv"], dv),
                  (cu_q[-1], c["hq"], dv)]
    else:
        shapes = [(c["b"], c["sq"], c["hq"], c["d"]), (c["b"], c["sk"], c["hkv"], c["d"]),
                  (c["b"], c["sk"], c["hkv"], dv), (c["b"], c["sq"], c["hq"], dv)]
    return [make(rng, s, dtype) for s in shapes]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("c", CASES, ids=case_id)
def test_bwd(c, dtype, rng):
    (q, q64), (k, k64), (v, v64), (do, do64) = inputs(c, dtype, rng)
    alibi = None
    if c.get("alibi") == "head":
        alibi = rng.uniform(0.01, 0.5, c["hq"]).astype(np.float32)
    elif c.get("alibi") == "batch":
        alibi = rng.uniform(0.01, 0.5, (c["b"], c["hq"])).astype(np.float32)
    kw = dict(dropout_p=c.get("dropout", 0.0), causal=c.get("causal", False), window_size=c.get("window", (-1, -1)),
              softcap=c.get("softcap", 0.0), alibi_slopes=alibi, deterministic=c.get("deterministic", False))
    with skip_if_unsupported("backward pass (fa_bwd)"):
        out, lse, rng_state = flashport.fwd(q, k, v, **kw)
        grads = flashport.bwd(do, q, k, v, out, lse, rng_state=rng_state, **kw)
    p = R.Params(causal=kw["causal"], window=kw["window_size"], softcap=kw["softcap"], dropout_p=kw["dropout_p"],
                 rng_state=rng_state)
    ref, nai, floors = reference_grads(q64, k64, v64, do64, p, dtype, alibi=alibi)
    R.assert_fa_rule("out", out, ref[0], nai[0], dtype)
    check_grads("bwd", grads, ref[2], nai[2], dtype, floors)
    if c.get("deterministic"):
        again = flashport.bwd(do, q, k, v, out, lse, rng_state=rng_state, **kw)
        for a, b in zip(grads, again):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("opts", [dict(), dict(causal=True), dict(window=(5, 1)), dict(dropout=0.15, causal=True)],
                         ids=lambda o: case_id(o) or "plain")
def test_bwd_varlen(opts, dtype, rng):
    c = dict(hq=4, hkv=2, d=32)
    lens_q, lens_k = [5, 0, 29, 12], [9, 3, 29, 40]
    (q, q64), (k, k64), (v, v64), (do, do64) = inputs(c, dtype, rng, varlen=(lens_q, lens_k))
    cu_q = np.concatenate([[0], np.cumsum(lens_q)]).astype(np.int32)
    cu_k = np.concatenate([[0], np.cumsum(lens_k)]).astype(np.int32)
    vl = dict(cu_seqlens_q=cu_q, cu_seqlens_k=cu_k, max_seqlen_q=max(lens_q), max_seqlen_k=max(lens_k))
    kw = dict(dropout_p=opts.get("dropout", 0.0), causal=opts.get("causal", False),
              window_size=opts.get("window", (-1, -1)))
    with skip_if_unsupported("varlen backward pass (fa_bwd)"):
        out, lse, rng_state = flashport.fwd(q, k, v, **kw, **vl)
        grads = flashport.bwd(do, q, k, v, out, lse, rng_state=rng_state, **kw, **vl)
    p = R.Params(causal=kw["causal"], window=kw["window_size"], dropout_p=kw["dropout_p"], rng_state=rng_state)
    ref, nai, floors = reference_grads(q64, k64, v64, do64, p, dtype, cu_q=cu_q, cu_k=cu_k)
    check_grads("varlen bwd", grads, ref[2], nai[2], dtype, floors)


def test_bwd_strided_dout(rng):
    """dout with free strides (and a broadcast one) is accepted."""
    (q, _), (k, _), (v, _), (do, _) = inputs(dict(b=1, sq=16, sk=16, hq=2, hkv=2, d=32), "float32", rng)
    with skip_if_unsupported("backward pass (fa_bwd)"):
        out, lse, st = flashport.fwd(q, k, v, causal=True)
        g1 = flashport.bwd(do, q, k, v, out, lse, causal=True)
    big = np.zeros((1, 16, 2, 64), np.float32)
    big[..., ::2] = do
    g2 = flashport.bwd(big[..., ::2], q, k, v, out, lse, causal=True)        # copied (last dim strided)
    g3 = flashport.bwd(np.asfortranarray(do), q, k, v, out, lse, causal=True)  # copied (Fortran order)
    for a, b, c in zip(g1, g2, g3):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)
    ones = np.broadcast_to(np.float32(1), do.shape)                           # all strides 0
    flashport.bwd(ones, q, k, v, out, lse, causal=True)


def test_bwd_needs_rng_state_with_dropout(rng):
    (q, _), (k, _), (v, _), (do, _) = inputs(dict(b=1, sq=8, sk=8, hq=1, hkv=1, d=16), "float32", rng)
    out, lse, st = flashport.fwd(q, k, v)
    with pytest.raises(ValueError, match="rng_state"):
        flashport.bwd(do, q, k, v, out, lse, dropout_p=0.1)
