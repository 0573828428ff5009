#!/usr/bin/env python3
"""torch SDPA decode on the GPU (flash and cuDNN backends) over the grid tests/cuda/cuda_fwd_check --decode runs:
one query token, GQA 32:8 (enable_gqa), hdim 128, bf16, batch 1/16/64, KV 8k..128k. Timed the same way: enough
input sets rotate that K/V are not in L2 from the call before, 40 calls queued back to back between two events,
best of 5. GB/s = bytes of K and V read / time."""
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

def bench(backend, b, kv, hq=32, hk=8, d=128):
    nbytes = 2 * 2 * b * kv * hk * d
    sets = min(8, (400 << 20) // nbytes + 1)
    q = torch.randn(b, hq, 1, d, device="cuda", dtype=torch.bfloat16)
    kvs = [(torch.randn(b, hk, kv, d, device="cuda", dtype=torch.bfloat16),
            torch.randn(b, hk, kv, d, device="cuda", dtype=torch.bfloat16)) for _ in range(sets)]
    f = torch.nn.functional.scaled_dot_product_attention
    with sdpa_kernel(backend):
        for i in range(3):
            f(q, *kvs[i % sets], enable_gqa=True)
        torch.cuda.synchronize()
        best = 1e30
        for _ in range(5):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            for i in range(40):
                f(q, *kvs[i % sets], enable_gqa=True)
            e1.record()
            torch.cuda.synchronize()
            best = min(best, e0.elapsed_time(e1) / 40 * 1e3)
    del kvs
    torch.cuda.empty_cache()
    return best, nbytes / best * 1e-3

print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
for b in (1, 16, 64):
    for kv in (8192, 16384, 32768, 65536, 131072):
        out = []
        for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
            try:
                us, gbs = bench(be, b, kv)
                out.append(f"{name} {us:.1f} us {gbs:.0f} GB/s")
            except Exception as e:  # a backend that declines the shape, or memory
                out.append(f"{name} n/a ({type(e).__name__})")
        print(f"torch decode bf16 b{b} kv{kv}: " + "; ".join(out), flush=True)
