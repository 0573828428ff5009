#!/usr/bin/env python3
"""flashport and torch SDPA on the CPU in one process, call by call: the ratio of each adjacent pair.

side_by_side.py runs each side's whole grid in turn; on a host whose speed drifts within seconds (the lent
GPU machines' Xeon VM: its FMA loop read 159-334 GFLOP/s between rounds a minute apart) the two can land in
different weather. Here each flashport call is paired with the torch call next to it (which goes first
alternates), both on the same tensors in flash_attn's (batch, seqlen, heads, dim) layout (torch gets
transposed views, as torch_sdpa_bench.py gives it), and the median of the per-pair ratios is reported
beside each side's median throughput. FLOPs as flashport-bench counts them (fwd 4*b*h*s^2*d, halved when
causal; fwd+bwd 3.5x). The backward runs through each side's autograd (flashport's torch Function).

OMP_WAIT_POLICY defaults to passive here: torch's OpenMP runtime and flashport's are separate thread pools
on the same cores, and an idle pool's spinning threads would steal them from the other side.

  interleaved_cpu.py [--hdim 128] [--seqlen 4096] [--batch 1] [--heads 16] [--causal both] [--pass both]
                     [--pairs 7] [--threads N]      (flashport found as in python/flashport: FLASHPORT_LIBRARY...)
"""
import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "passive")  # before either OpenMP runtime starts


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--hdim", type=int, default=128)
    p.add_argument("--seqlen", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--causal", choices=["off", "on", "both"], default="both")
    p.add_argument("--pass", dest="passes", choices=["fwd", "fwdbwd", "both"], default="both")
    p.add_argument("--pairs", type=int, default=7, help="timed pairs per point (default 7), after one warm-up pair")
    p.add_argument("--threads", type=int, default=0, help="threads for both (default: OMP_NUM_THREADS, else all)")
    args = p.parse_args()
    if args.pairs < 1:
        p.error("--pairs must be at least 1")

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import flashport

    threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    b, s, h, d = args.batch, args.seqlen, args.heads, args.hdim
    print(f"torch {torch.__version__} ({threads} threads, flash backend), flashport {flashport.library_version()} "
          f"({flashport.library_path()}); OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}; {args.pairs} pairs")
    print(f"{'pass':7} {'d':>4} {'seqlen':>6} {'b':>3} {'h':>3} {'causal':6} {'fp GFLOP/s':>10} {'th GFLOP/s':>10} "
          f"{'ratio median':>12} {'min':>5} {'max':>5}  per pair      max|fp - torch|")

    sets = [[torch.empty(b, s, h, d).uniform_(-1, 1) for _ in range(4)] for _ in range(2)]  # q, k, v, dout
    for pas in {"fwd": ["fwd"], "fwdbwd": ["fwdbwd"], "both": ["fwd", "fwdbwd"]}[args.passes]:
        for causal in {"off": [False], "on": [True], "both": [False, True]}[args.causal]:
            flops = 4.0 * b * h * s * s * d * (0.5 if causal else 1.0) * (3.5 if pas == "fwdbwd" else 1.0)

            def run(side, i):
                q, k, v, dout = sets[i % 2]
                if pas == "fwdbwd":
                    q, k, v = (x.detach().requires_grad_(True) for x in (q, k, v))
                t0 = time.perf_counter()
                with torch.set_grad_enabled(pas == "fwdbwd"):
                    if side == "fp":
                        out = flashport.flash_attn_func(q, k, v, causal=causal)
                    else:
                        with sdpa_kernel([SDPBackend.FLASH_ATTENTION]):
                            out = sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       is_causal=causal).transpose(1, 2)
                    if pas == "fwdbwd":
                        torch.autograd.grad(out, (q, k, v), dout)
                return time.perf_counter() - t0, out.detach()

            fp_t, th_t, ratios = [], [], []
            for i in range(args.pairs + 1):
                order = ("fp", "th") if i % 2 == 0 else ("th", "fp")
                got = {side: run(side, i) for side in order}
                if i == 0:  # warm-up pair: plans, first touch; and one check that both computed the same thing
                    diff = (got["fp"][1] - got["th"][1]).abs().max().item()
                    continue
                fp_t.append(got["fp"][0])
                th_t.append(got["th"][0])
                ratios.append(got["th"][0] / got["fp"][0])
            fp_g, th_g = flops / statistics.median(fp_t) * 1e-9, flops / statistics.median(th_t) * 1e-9
            print(f"{'fwd' if pas == 'fwd' else 'fwd+bwd':7} {d:>4} {s:>6} {b:>3} {h:>3} {'yes' if causal else 'no':6} "
                  f"{fp_g:10.1f} {th_g:10.1f} {statistics.median(ratios):12.2f} {min(ratios):5.2f} "
                  f"{max(ratios):5.2f}  {' '.join(f'{r:.2f}' for r in ratios)}  {diff:.1e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
