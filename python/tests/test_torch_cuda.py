"""CUDA torch tensors on the CUDA backend: flash_attn_func on the tensors' device and current stream, checked
against torch SDPA in float32 on the same inputs. Skipped without torch, a CUDA device, or flashport's CUDA
backend (libflashport_cuda.so beside the library)."""
import pytest

from conftest import HAVE_TORCH

if not HAVE_TORCH:
    pytest.skip("torch is not importable", allow_module_level=True)

import torch  # noqa: E402

if not torch.cuda.is_available():
    pytest.skip("no CUDA device", allow_module_level=True)

import flashport  # noqa: E402
from flashport import _core  # noqa: E402

if not any(d.backend_name == "cuda" for d in _core.devices()):
    pytest.skip("flashport has no CUDA backend here (FLASHPORT_LOG=1 says why)", allow_module_level=True)


def reference(q, k, v, causal, window=(-1, -1)):
    """SDPA in float32 with the bottom-right causal/window mask, GQA heads repeated; (b, s, h, d) layout."""
    b, sq, hq, d = q.shape
    sk, hk = k.shape[1], k.shape[2]
    qf, kf, vf = (x.float().transpose(1, 2) for x in (q, k, v))
    kf = kf.repeat_interleave(hq // hk, dim=1)
    vf = vf.repeat_interleave(hq // hk, dim=1)
    i = torch.arange(sq, device=q.device)[:, None] + (sk - sq)
    j = torch.arange(sk, device=q.device)[None, :]
    keep = torch.ones(sq, sk, dtype=torch.bool, device=q.device)
    left, right = window
    if causal:
        right = 0
    if right >= 0:
        keep &= j <= i + right
    if left >= 0:
        keep &= j >= i - left
    out = torch.nn.functional.scaled_dot_product_attention(qf, kf, vf, attn_mask=keep)
    return out.transpose(1, 2)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 300, 517, 8, 2, 64), (1, 257, 129, 4, 4, 128), (2, 128, 128, 2, 1, 256)])
def test_fwd_matches_sdpa(dtype, causal, shape):
    b, sq, sk, hq, hk, d = shape
    g = torch.Generator(device="cuda").manual_seed(sq * 31 + sk)
    q = torch.randn(b, sq, hq, d, device="cuda", dtype=dtype, generator=g)
    k = torch.randn(b, sk, hk, d, device="cuda", dtype=dtype, generator=g)
    v = torch.randn(b, sk, hk, d, device="cuda", dtype=dtype, generator=g)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # the call must run on the caller's current stream
        out = flashport.flash_attn_func(q, k, v, causal=causal)
    side.synchronize()
    assert out.device == q.device and out.dtype == dtype and out.shape == (b, sq, hq, d)
    ref = reference(q, k, v, causal)
    if causal and sq > sk:  # rows that see no key: flash_attn gives 0, SDPA NaN
        ref = torch.nan_to_num(ref, nan=0.0)
    err = (out.float() - ref).abs().max().item()
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    assert err <= tol, "max |flashport - sdpa| = %g > %g" % (err, tol)


def test_window_and_lse():
    g = torch.Generator(device="cuda").manual_seed(7)
    q, k, v = (torch.randn(1, 200, 4, 128, device="cuda", dtype=torch.bfloat16, generator=g) for _ in range(3))
    out, lse, _ = flashport.flash_attn_func(q, k, v, window_size=(32, 16), return_attn_probs=True)
    ref = reference(q, k, v, False, (32, 16))
    assert (out.float() - ref).abs().max().item() <= 2e-2
    s = torch.einsum("bihd,bjhd->bhij", q.float(), k.float()) / 128 ** 0.5
    i = torch.arange(200, device="cuda")[:, None]
    j = torch.arange(200, device="cuda")[None, :]
    s = s.masked_fill(~((j >= i - 32) & (j <= i + 16)), float("-inf"))
    assert (lse - torch.logsumexp(s, dim=-1)).abs().max().item() <= 1e-3


def test_unsupported_says_why():
    # fp32 runs (exact SIMT kernel), but not yet with dropout: the error must name what is missing
    q = torch.randn(1, 64, 2, 64, device="cuda", dtype=torch.float32)
    with pytest.raises(flashport.FlashportError, match="dropout with fp32"):
        flashport.flash_attn_func(q, q, q, dropout_p=0.1)


def test_fp32_matches_sdpa():
    g = torch.Generator(device="cuda").manual_seed(3)
    q, k, v = (torch.randn(2, 150, 4, 64, device="cuda", generator=g) for _ in range(3))
    out = flashport.flash_attn_func(q, k, v, causal=True)
    ref = reference(q, k, v, True)  # float32 SDPA: both sides round in fp32
    assert out.dtype == torch.float32 and (out - ref).abs().max().item() <= 1e-4


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 300, 517, 8, 2, 64), (1, 129, 257, 4, 4, 128)])
def test_dropout_matches_cpu_backend(causal, shape):
    """Dropout on CUDA against flashport's CPU backend on CPU copies: the same torch seed gives the same
    (seed, offset), so both draw the same mask (fa_dropout_keep); forward and .backward() compared."""
    b, sq, sk, hq, hk, d = shape
    p = 0.2
    g = torch.Generator(device="cuda").manual_seed(sq + sk + causal)
    q = torch.randn(b, sq, hq, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
    k = torch.randn(b, sk, hk, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
    v = torch.randn(b, sk, hk, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
    dout = torch.randn(b, sq, hq, d, device="cuda", dtype=torch.bfloat16, generator=g)
    torch.manual_seed(1234)
    out = flashport.flash_attn_func(q, k, v, dropout_p=p, causal=causal)
    out.backward(dout)
    qc, kc, vc = (x.detach().cpu().requires_grad_() for x in (q, k, v))
    torch.manual_seed(1234)
    outc = flashport.flash_attn_func(qc, kc, vc, dropout_p=p, causal=causal)
    outc.backward(dout.cpu())
    plain = flashport.flash_attn_func(qc.detach(), kc.detach(), vc.detach(), causal=causal)
    eps = 1.0 / 128
    got, want = out.detach().float().cpu(), outc.detach().float()
    assert (got - want).abs().max().item() <= 2 * eps * want.abs().max().item() + 1e-3
    # the mask matters: without dropout the result is far from both
    assert (plain.float() - want).abs().max().item() > 10 * (2 * eps * want.abs().max().item() + 1e-3)
    for name, gg, gw in (("dq", q.grad, qc.grad), ("dk", k.grad, kc.grad), ("dv", v.grad, vc.grad)):
        gg, gw = gg.float().cpu(), gw.float()
        err, scale = (gg - gw).abs().max().item(), gw.abs().max().item()
        assert err <= 4 * eps * scale + 1e-3, (name, err, scale)


@pytest.mark.parametrize("deterministic", [False, True])
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("shape", [(2, 300, 517, 8, 2, 64), (1, 257, 129, 4, 4, 128)])
def test_backward_matches_sdpa(deterministic, causal, shape):
    """.backward() through the CUDA backward; gradients against float32 autograd of the reference."""
    b, sq, sk, hq, hk, d = shape
    g = torch.Generator(device="cuda").manual_seed(sq + sk + causal)
    q = torch.randn(b, sq, hq, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
    k = torch.randn(b, sk, hk, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
    v = torch.randn(b, sk, hk, d, device="cuda", dtype=torch.bfloat16, generator=g).requires_grad_()
    dout = torch.randn(b, sq, hq, d, device="cuda", dtype=torch.bfloat16, generator=g)
    out = flashport.flash_attn_func(q, k, v, causal=causal, deterministic=deterministic)
    out.backward(dout)
    qf, kf, vf = (x.detach().float().requires_grad_() for x in (q, k, v))
    ref = reference(qf, kf, vf, causal)
    if causal and sq > sk:
        ref = torch.nan_to_num(ref, nan=0.0)
    ref.backward(dout.float())
    for name, got, want in (("dq", q.grad, qf.grad), ("dk", k.grad, kf.grad), ("dv", v.grad, vf.grad)):
        want = torch.nan_to_num(want, nan=0.0)
        err = (got.float() - want).abs().max().item()
        tol = 3e-2 * want.abs().max().item() + 1e-3
        assert err <= tol, "%s: max |flashport - autograd| = %g > %g" % (name, err, tol)


def _cpu_copy(x):
    return None if x is None else x.detach().cpu().clone()


def test_varlen_matches_cpu_backend():
    """flash_attn_varlen_func on CUDA tensors (cu_seqlens on the GPU) against the CPU backend on copies."""
    g = torch.Generator(device="cuda").manual_seed(11)
    lens_q, lens_k = [5, 130, 77], [40, 130, 300]
    cu_q = torch.tensor([0, 5, 135, 212], dtype=torch.int32, device="cuda")
    cu_k = torch.tensor([0, 40, 170, 470], dtype=torch.int32, device="cuda")
    q = torch.randn(sum(lens_q), 8, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    k = torch.randn(sum(lens_k), 2, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    v = torch.randn(sum(lens_k), 2, 128, device="cuda", dtype=torch.bfloat16, generator=g)
    out = flashport.flash_attn_varlen_func(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True)
    ref = flashport.flash_attn_varlen_func(*(_cpu_copy(x) for x in (q, k, v, cu_q, cu_k)), max(lens_q), max(lens_k),
                                           causal=True)
    assert out.is_cuda and not ref.is_cuda
    assert (out.cpu().float() - ref.float()).abs().max().item() <= 2e-2


@pytest.mark.parametrize("paged", [False, True])
def test_kvcache_append_rotary_matches_cpu_backend(paged):
    """flash_attn_with_kvcache with new keys, rotary and (paged) a block table: output and cache contents."""
    g = torch.Generator(device="cuda").manual_seed(5 + paged)
    b, hq, hk, d, cap, new = 3, 8, 2, 128, 512, 2
    seqlens = torch.tensor([10, 300, 509 - new], dtype=torch.int32, device="cuda")
    q = torch.randn(b, new, hq, d, device="cuda", dtype=torch.float16, generator=g)
    k_new = torch.randn(b, new, hk, d, device="cuda", dtype=torch.float16, generator=g)
    v_new = torch.randn(b, new, hk, d, device="cuda", dtype=torch.float16, generator=g)
    angle = torch.rand(cap, d // 4, device="cuda", generator=g) * 6.28
    cos, sin = angle.cos(), angle.sin()  # rotary over half the head
    if paged:
        page = 16
        pages = b * cap // page
        block_table = torch.randperm(pages, device="cuda", generator=g).to(torch.int32).reshape(b, cap // page)
        k_cache = torch.randn(pages, page, hk, d, device="cuda", dtype=torch.float16, generator=g)
    else:
        block_table = None
        k_cache = torch.randn(b, cap, hk, d, device="cuda", dtype=torch.float16, generator=g)
    v_cache = torch.randn_like(k_cache)
    kc, vc = _cpu_copy(k_cache), _cpu_copy(v_cache)
    out = flashport.flash_attn_with_kvcache(q, k_cache, v_cache, k_new, v_new, rotary_cos=cos, rotary_sin=sin,
                                            cache_seqlens=seqlens, block_table=block_table, causal=True,
                                            rotary_interleaved=False)
    ref = flashport.flash_attn_with_kvcache(_cpu_copy(q), kc, vc, _cpu_copy(k_new), _cpu_copy(v_new),
                                            rotary_cos=_cpu_copy(cos), rotary_sin=_cpu_copy(sin),
                                            cache_seqlens=_cpu_copy(seqlens), block_table=_cpu_copy(block_table),
                                            causal=True, rotary_interleaved=False)
    assert (out.cpu().float() - ref.float()).abs().max().item() <= 4e-3
    assert torch.equal(k_cache.cpu(), kc) and torch.equal(v_cache.cpu(), vc)
