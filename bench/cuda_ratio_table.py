#!/usr/bin/env python3
"""The ratio table of bench/cuda_side_by_side.sh: flashport-bench lines against torch_cuda_fwd.py lines (fwd and
fwd+bwd, TFLOP/s, ratio flashport / FA2), and cuda_fwd_check --decode against torch_cuda_decode.py (us, ratio
cuDNN time / flashport time, > 1: flashport faster). Usage: cuda_ratio_table.py DIR"""
import os
import re
import sys


def ours(path):
    r = {}
    for line in open(path):
        m = re.match(r"(fwd\+bwd|fwd)\s+(\d+)\s+(\d+)\s+\d+\s+\d+\s+(no|yes)\s.*?([\d.]+)\s+([\d.]+)\s+-\s*$", line)
        if m:
            r[(int(m.group(2)), int(m.group(3)), m.group(4) == "yes")] = float(m.group(6))
    return r


def torch(path):
    r = {}
    for line in open(path):
        m = re.search(r"d(\d+) s(\d+) .*causal=(\d): flash [\d.]+ ms ([\d.]+) TFLOP/s", line)
        if m:
            r[(int(m.group(1)), int(m.group(2)), m.group(3) == "1")] = float(m.group(4))
    return r


def decode(path):
    ours_us, cudnn_us = {}, {}
    for line in open(path):
        m = re.match(r"decode bf16 b(\d+) kv(\d+) .*: ([\d.]+) us", line)
        if m:
            ours_us[(int(m.group(1)), int(m.group(2)))] = float(m.group(3))
        m = re.match(r"torch decode bf16 b(\d+) kv(\d+): flash [\d.]+ us [\d.]+ GB/s; cudnn ([\d.]+) us", line)
        if m:
            cudnn_us[(int(m.group(1)), int(m.group(2)))] = float(m.group(3))
    return ours_us, cudnn_us


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "."
    for name, a, b in (("fwd", "bench_fwd.txt", "torch_fwd.txt"), ("fwd+bwd", "bench_bwd.txt", "torch_bwd.txt")):
        if not (os.path.exists(os.path.join(d, a)) and os.path.exists(os.path.join(d, b))):
            continue
        o, t = ours(os.path.join(d, a)), torch(os.path.join(d, b))
        print(name)
        for k in sorted(o):
            if k in t:
                print("  d%d s%d causal=%d  flashport %.1f  FA2 %.1f  ratio %.2f" % (k[0], k[1], k[2], o[k], t[k], o[k] / t[k]))
    if os.path.exists(os.path.join(d, "decode.txt")):
        o, c = decode(os.path.join(d, "decode.txt"))
        print("decode (us)")
        for k in sorted(o):
            if k in c:
                print("  b%d kv%d  flashport %.1f  cuDNN %.1f  cuDNN/flashport %.2f" % (k[0], k[1], o[k], c[k], c[k] / o[k]))


if __name__ == "__main__":
    main()
