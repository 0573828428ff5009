"""torch CPU tensors (fp32, fp16, bf16): forward, strided views, autograd through fa_bwd, packed and varlen
variants, dropout seeded from torch's RNG, the KV cache updated in place, GPU routing errors."""
import numpy as np
import pytest

from conftest import HAVE_TORCH, skip_if_unsupported

if not HAVE_TORCH:
    pytest.skip("torch is not importable", allow_module_level=True)

import torch  # noqa: E402

import flashport  # noqa: E402
import reference as R  # noqa: E402
from flashport import _arrays, _core  # noqa: E402

TDTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def t(shape, dtype, gen, requires_grad=False):
    x = torch.randn(shape, generator=gen, dtype=torch.float32).to(TDTYPES[dtype])
    return x.requires_grad_(requires_grad)


def f64(x):
    return x.detach().double().numpy()


@pytest.fixture
def gen(request):
    return torch.Generator().manual_seed(abs(hash(request.node.nodeid)) % (2 ** 31))


@pytest.mark.parametrize("dtype", list(TDTYPES))
@pytest.mark.parametrize("opts", [dict(), dict(causal=True, hkv=2), dict(window=(6, 3), softcap=4.0),
                                  dict(alibi=True, causal=True)], ids=lambda o: str(sorted(o.items())))
def test_forward(opts, dtype, gen):
    b, sq, sk, hq, d = 2, 29, 45, 4, 32
    hkv = opts.get("hkv", hq)
    q, k, v = t((b, sq, hq, d), dtype, gen), t((b, sk, hkv, d), dtype, gen), t((b, sk, hkv, d), dtype, gen)
    alibi = torch.rand(hq, generator=gen) * 0.4 + 0.01 if opts.get("alibi") else None
    p = R.Params(causal=opts.get("causal", False), window=opts.get("window", (-1, -1)), softcap=opts.get("softcap", 0.0))
    out, lse, none = flashport.flash_attn_func(q, k, v, causal=p.causal, window_size=p.window, softcap=p.softcap,
                                               alibi_slopes=alibi, return_attn_probs=True)
    assert none is None and isinstance(out, torch.Tensor) and out.dtype == TDTYPES[dtype]
    assert lse.dtype == torch.float32 and lse.shape == (b, hq, sq)
    a = alibi.numpy() if alibi is not None else None
    ref = R.attention(f64(q), f64(k), f64(v), p, alibi=a)
    nai = R.attention(f64(q), f64(k), f64(v), p, alibi=a, dtype=dtype)
    R.assert_fa_rule("out", f64(out), ref[0], nai[0], dtype)
    R.assert_fa_rule("lse", f64(lse), ref[1], nai[1], "float32")


@pytest.mark.parametrize("dtype", list(TDTYPES))
def test_strided_views(dtype, gen):
    """(batch, heads, seqlen, dim) tensors transposed to flash_attn's layout are passed with their strides."""
    qh, kh, vh = (t((2, 3, 20, 32), dtype, gen) for _ in range(3))
    q, k, v = (x.transpose(1, 2) for x in (qh, kh, vh))
    assert not q.is_contiguous()
    out = flashport.flash_attn_func(q, k, v, causal=True)
    out_c = flashport.flash_attn_func(q.contiguous(), k.contiguous(), v.contiguous(), causal=True)
    assert torch.equal(out, out_c)
    vs = t((2, 20, 3, 64), dtype, gen)[..., ::2]  # last dim not contiguous: copied
    out2 = flashport.flash_attn_func(q, k, vs)
    assert torch.equal(out2, flashport.flash_attn_func(q, k, vs.contiguous()))


def _grads_check(q, k, v, dout, out, p, dtype, alibi=None, **kw):
    terms = {}
    ref = R.attention(f64(q), f64(k), f64(v), p, alibi=alibi, dout=f64(dout), terms=terms, **kw)
    nai = R.attention(f64(q), f64(k), f64(v), p, alibi=alibi, dout=f64(dout), dtype=dtype, **kw)
    floors = R.grad_floors(dtype, ref[2], ref[1], f64(q), f64(k), f64(dout), terms)
    R.assert_fa_rule("out", f64(out), ref[0], nai[0], dtype)
    for x, r, n, fl, name in zip((q, k, v), ref[2], nai[2], floors, ("dq", "dk", "dv")):
        assert x.grad is not None and x.grad.dtype == x.dtype and x.grad.shape == x.shape
        R.assert_fa_rule(name, f64(x.grad), r, n, dtype, factor=3.0, extra_floor=fl - R.floor_of(dtype, r))


@pytest.mark.parametrize("dtype", list(TDTYPES))
@pytest.mark.parametrize("opts", [dict(), dict(causal=True, hkv=2), dict(window=(5, 2), softcap=3.0),
                                  dict(alibi=True), dict(dropout=0.2, causal=True, hkv=1),
                                  dict(deterministic=True, causal=True)],
                         ids=lambda o: str(sorted(o.items())))
def test_autograd(opts, dtype, gen):
    b, sq, sk, hq, d = 2, 23, 31, 4, 32
    hkv = opts.get("hkv", hq)
    q = t((b, sq, hq, d), dtype, gen, True)
    k = t((b, sk, hkv, d), dtype, gen, True)
    v = t((b, sk, hkv, d), dtype, gen, True)
    dout = t((b, sq, hq, d), dtype, gen)
    alibi = (torch.rand(b, hq, generator=gen) * 0.4 + 0.01) if opts.get("alibi") else None
    pd = opts.get("dropout", 0.0)
    rng_state = None
    if pd:
        torch.manual_seed(77)
        rng_state = _core._draw_seed(_arrays.wrap(q, "q"))
        torch.manual_seed(77)  # the call below draws the same (seed, offset)
    with skip_if_unsupported("backward pass (fa_bwd) through autograd"):
        out = flashport.flash_attn_func(q, k, v, dropout_p=pd, causal=opts.get("causal", False),
                                        window_size=opts.get("window", (-1, -1)), softcap=opts.get("softcap", 0.0),
                                        alibi_slopes=alibi, deterministic=opts.get("deterministic", False))
        assert out.requires_grad and out.grad_fn is not None
        out.backward(dout)
    p = R.Params(causal=opts.get("causal", False), window=opts.get("window", (-1, -1)),
                 softcap=opts.get("softcap", 0.0), dropout_p=pd, rng_state=rng_state)
    _grads_check(q, k, v, dout, out, p, dtype, alibi=alibi.numpy() if alibi is not None else None)


def test_autograd_qkvpacked_and_lse(gen):
    qkv = t((2, 17, 3, 2, 32), "float32", gen, True)
    with skip_if_unsupported("backward pass (fa_bwd) through autograd"):
        out, lse, s = flashport.flash_attn_qkvpacked_func(qkv, causal=True, return_attn_probs=True)
        assert not lse.requires_grad and s is None
        (out.float() ** 2).sum().backward()
    q, k, v = (qkv.detach()[:, :, i].clone().requires_grad_() for i in range(3))
    out2 = flashport.flash_attn_func(q, k, v, causal=True)
    (out2.float() ** 2).sum().backward()
    assert torch.allclose(qkv.grad, torch.stack([q.grad, k.grad, v.grad], dim=2), rtol=0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_autograd_varlen(dtype, gen):
    lens_q, lens_k = [4, 19, 0, 11], [7, 19, 5, 30]
    cu_q = torch.tensor(np.concatenate([[0], np.cumsum(lens_q)]), dtype=torch.int32)
    cu_k = torch.tensor(np.concatenate([[0], np.cumsum(lens_k)]), dtype=torch.int32)
    q = t((int(cu_q[-1]), 4, 32), dtype, gen, True)
    k = t((int(cu_k[-1]), 2, 32), dtype, gen, True)
    v = t((int(cu_k[-1]), 2, 32), dtype, gen, True)
    dout = t(q.shape, dtype, gen)
    with skip_if_unsupported("varlen backward pass (fa_bwd) through autograd"):
        out = flashport.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True)
        out.backward(dout)
    _grads_check(q, k, v, dout, out, R.Params(causal=True), dtype, cu_q=cu_q.numpy(), cu_k=cu_k.numpy())


def test_no_grad_and_inference_paths(gen):
    q = t((1, 8, 2, 16), "float32", gen, True)
    with torch.no_grad():
        out = flashport.flash_attn_func(q, q, q)
    assert out.grad_fn is None
    with torch.inference_mode():
        out = flashport.flash_attn_func(q.detach(), q.detach(), q.detach())
    assert out.shape == q.shape


def test_dropout_uses_torch_rng(gen):
    q = t((1, 16, 2, 32), "float16", gen)
    torch.manual_seed(3)
    a = flashport.flash_attn_func(q, q, q, dropout_p=0.3)
    b = flashport.flash_attn_func(q, q, q, dropout_p=0.3)
    torch.manual_seed(3)
    c = flashport.flash_attn_func(q, q, q, dropout_p=0.3)
    assert not torch.equal(a, b) and torch.equal(a, c)


@pytest.mark.parametrize("dtype", list(TDTYPES))
@pytest.mark.parametrize("rotary", [None, True, False], ids=["norotary", "interleaved", "halves"])
def test_kvcache_append_inplace(rotary, dtype, gen):
    b, sq, sn, cap, hq, hkv, d = 2, 2, 2, 48, 4, 2, 32
    q = t((b, sq, hq, d), dtype, gen)
    kc, vc = t((b, cap, hkv, d), dtype, gen), t((b, cap, hkv, d), dtype, gen)
    kn, vn = t((b, sn, hkv, d), dtype, gen), t((b, sn, hkv, d), dtype, gen)
    kc0, vc0 = kc.clone(), vc.clone()
    seqlens = torch.tensor([3, 40], dtype=torch.int32)
    cos = sin = None
    if rotary is not None:
        ang = torch.arange(cap)[:, None] * (1.0 / 10000 ** (torch.arange(0, 16, 2) / 16.0))[None, :]
        cos, sin = torch.cos(ang), torch.sin(ang)  # rotary_dim 16 < head dim
    with skip_if_unsupported("KV-cache append%s" % ("" if rotary is None else " + rotary")):
        out, lse = flashport.flash_attn_with_kvcache(q, kc, vc, kn, vn, cos, sin, cache_seqlens=seqlens, causal=True,
                                                     rotary_interleaved=bool(rotary), return_softmax_lse=True)
    for i, L in enumerate(seqlens.tolist()):
        assert torch.equal(kc[i, :L], kc0[i, :L]) and torch.equal(kc[i, L + sn:], kc0[i, L + sn:])
        assert torch.equal(vc[i, L:L + sn], vn[i])
        if rotary is None:
            assert torch.equal(kc[i, L:L + sn], kn[i])
        else:
            pos = L + np.arange(sn)
            ref = R.rotate(f64(kn[i]), cos.numpy(), sin.numpy(), pos, bool(rotary))
            nai = R.rotate_naive(f64(kn[i]), cos.numpy(), sin.numpy(), pos, bool(rotary), dtype)
            R.assert_fa_rule("rotated k", f64(kc[i, L:L + sn]), ref, nai, dtype)
    # The attention itself, against the reference over the updated cache (q rotated as flash_attn does).
    p = R.Params(causal=True)
    qr = f64(q)
    if rotary is not None:
        qr = np.stack([R.rotate_naive(qr[i], cos.numpy(), sin.numpy(), int(seqlens[i]) + np.arange(sq), bool(rotary),
                                      dtype) for i in range(b)])
    used = seqlens.numpy() + sn
    ref = R.attention(qr, f64(kc), f64(vc), p, seqlens_k=used)
    nai = R.attention(qr, f64(kc), f64(vc), p, seqlens_k=used, dtype=dtype)
    R.assert_fa_rule("out", f64(out), ref[0], nai[0], dtype)
    R.assert_fa_rule("lse", f64(lse), ref[1], nai[1], "float32")


def test_kvcache_needs_contiguous_last_dim_for_append(gen):
    q = t((1, 1, 2, 16), "float32", gen)
    kc = t((1, 8, 2, 32), "float32", gen)[..., ::2]
    kn = t((1, 1, 2, 16), "float32", gen)
    with pytest.raises(ValueError, match="contiguous last dimension"):
        flashport.flash_attn_with_kvcache(q, kc, kc.clone(), kn, kn, cache_seqlens=2)


def test_plan_cache_reuses_plans(gen):
    q = t((1, 12, 2, 16), "float16", gen)
    flashport.flash_attn_func(q, q, q, causal=True)
    before = flashport.plan_cache_info()
    for _ in range(5):
        flashport.flash_attn_func(q, q, q, causal=True)
    after = flashport.plan_cache_info()
    assert after["misses"] == before["misses"] and after["hits"] == before["hits"] + 5


def test_mixed_kinds_and_dtypes_rejected(gen):
    q = t((1, 4, 2, 16), "float32", gen)
    with pytest.raises(ValueError, match="numpy arrays or torch tensors"):
        flashport.flash_attn_func(q, q.numpy(), q.numpy())
    with pytest.raises(TypeError, match="share a dtype"):
        flashport.flash_attn_func(q, q.half(), q.half())
    with pytest.raises(TypeError, match="float64"):
        flashport.flash_attn_func(q.double(), q.double(), q.double())


def test_gpu_tensors_without_gpu_backend_raise_clearly():
    """A CUDA tensor routes to a CUDA device of libflashport; without one the error names the plugin."""
    fake = _arrays.Arr()
    fake.kind, fake.device = "torch", torch.device("cuda", 0)
    if any(d.backend == flashport._capi.FA_BACKEND_CUDA for d in flashport.devices()):
        pytest.skip("a CUDA device is present")
    with pytest.raises(RuntimeError, match="libflashport_cuda.so"):
        _core._device_for(fake)
    meta = torch.empty((1, 4, 2, 16), device="meta")
    with pytest.raises(RuntimeError, match="meta"):
        flashport.flash_attn_func(meta, meta, meta)
