#!/usr/bin/env python3
"""torch SDPA forward on the GPU (flash and cuDNN backends) over the grid tests/cuda/cuda_fwd_check --bench
runs: bf16, 16k tokens, hidden 2048 (hdim 64/128/256), seqlen 2k..16k, causal off/on. Prints one line per point
in the same shape as the check's bench lines, so the two can be put side by side from one run. --bwd: forward +
backward through autograd instead (FLOPs 3.5x the forward's)."""
import sys

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

BWD = "--bwd" in sys.argv  # forward + backward (autograd), FLOPs 3.5x the forward's


def bench(backend, b, s, h, d, causal):
    q, k, v = (torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16, requires_grad=BWD) for _ in range(3))
    dout = torch.randn(b, h, s, d, device="cuda", dtype=torch.bfloat16)

    def call():
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=bool(causal))
        if BWD:
            out.backward(dout)

    with sdpa_kernel(backend):
        for _ in range(3):
            call()
        torch.cuda.synchronize()
        ts = []
        for _ in range(10):
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record()
            call()
            e1.record()
            torch.cuda.synchronize()
            ts.append(e0.elapsed_time(e1))
    ts.sort()
    ms = (ts[4] + ts[5]) / 2
    flop = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0) * (3.5 if BWD else 1.0)
    return ms, flop / ms * 1e-9

print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
for d, h in ((64, 32), (128, 16), (256, 8)):
    for s in (2048, 4096, 8192, 16384):
        for causal in (0, 1):
            out = []
            for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION)):
                try:
                    ms, tf = bench(be, 16384 // s, s, h, d, causal)
                    out.append(f"{name} {ms:.3f} ms {tf:.1f} TFLOP/s")
                except Exception as e:  # a backend that declines the shape
                    out.append(f"{name} n/a ({type(e).__name__})")
            print(f"torch {'fwd+bwd' if BWD else 'fwd'} bf16 d{d} s{s} b{16384 // s} h{h} causal={causal}: " + "; ".join(out))
