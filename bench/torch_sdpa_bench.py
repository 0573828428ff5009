#!/usr/bin/env python3
"""torch.nn.functional.scaled_dot_product_attention over flashport-bench's grid, for side-by-side numbers.

Same shapes, same FLOP convention (fwd 4*b*h*sq*sk*d, halved when causal; fwd+bwd 3.5x fwd; decode: GB/s
of K and V read), same method (rotating input sets, warm-up, median of repeats). Inputs live in
flashport's (batch, seqlen, heads, dim) memory layout and reach SDPA as transposed views, as flash_attn
users pass them (--layout bhsd gives torch its own contiguous layout instead).

CPU: torch.set_num_threads to match the OpenMP threads flashport uses; SDPA's fused CPU kernel is forced
(--backends flash; 'default' lets torch choose, 'math' is the reference path).
GPU: each of --backends (default flash,cudnn,efficient) is forced in turn via torch.nn.attention.sdpa_kernel.

  torch_sdpa_bench.py [--device cpu|cuda|cuda:N] [grid options as flashport-bench] [--json]
  torch_sdpa_bench.py --points flashport.json --json     # exactly the points of a flashport-bench --json run
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

FLOP_CONVENTION = "fwd 4*b*h*sq*sk*d, halved when causal; fwd+bwd 3.5x fwd; decode reports K/V bytes read"
DTYPE_SIZE = {"fp32": 4, "fp16": 2, "bf16": 2}


def parse_list(text):
    out = []
    for tok in text.split(","):
        tok = tok.strip().lower()
        mul = 1024 if tok.endswith("k") else 1
        value = int(tok[:-1] if mul > 1 else tok) * mul
        if value <= 0:
            raise argparse.ArgumentTypeError(f"bad list entry '{tok}'")
        out.append(value)
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if available, else cpu)")
    p.add_argument("--grid", choices=["fwd", "decode", "all"], default="fwd")
    p.add_argument("--decode", action="store_true", help="same as --grid decode")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                   help="default: bf16 on GPUs, fp32 on the CPU")
    p.add_argument("--hdim", type=parse_list)
    p.add_argument("--seqlen", type=parse_list)
    p.add_argument("--causal", choices=["off", "on", "both", "0", "1"], default="both")
    p.add_argument("--pass", dest="passes", choices=["fwd", "fwdbwd", "bwd", "both"], default="both")
    p.add_argument("--hidden", type=int, default=2048)
    p.add_argument("--tokens", type=int, default=0, help="default 16384; 4096 with --quick on a CPU")
    p.add_argument("--batch", type=parse_list)
    p.add_argument("--heads", type=int, default=0)
    p.add_argument("--decode-batch", type=parse_list)
    p.add_argument("--kv", type=parse_list)
    p.add_argument("--gqa", default="32:8")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--repeats", type=int, default=0, help="default CPU 5, decode 10; GPU 20")
    p.add_argument("--warmup", type=int, default=-1, help="default 1 on the CPU, 2 for decode; GPU 5")
    p.add_argument("--mem-gb", type=float, default=0.0)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: OMP_NUM_THREADS, else all)")
    p.add_argument("--backends", default=None, help="comma list of flash,cudnn,efficient,math,default")
    p.add_argument("--layout", choices=["bshd", "bhsd"], default="bshd")
    p.add_argument("--points", help="flashport-bench --json output: run exactly its points")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.decode:
        args.grid = "decode"
    return args


# ------------------------------------------------------------------------------------------------ grid

def llc_bytes():
    """Last-level cache of this CPU from sysfs (32 MiB if unknown)."""
    best = 0
    base = "/sys/devices/system/cpu/cpu0/cache"
    for i in range(8):
        try:
            with open(f"{base}/index{i}/level") as f:
                level = int(f.read())
            with open(f"{base}/index{i}/size") as f:
                size = f.read().strip()
        except OSError:
            break
        if level >= 2 and size.endswith("K"):
            best = max(best, int(size[:-1]) * 1024)
    return best or 32 << 20


def make_point(grid, pas, dtype, batch, hq, hk, sq, sk, d, causal):
    return {"grid": grid, "pass": pas, "dtype": dtype, "batch": batch, "heads_q": hq, "heads_kv": hk,
            "seqlen_q": sq, "seqlen_k": sk, "hdim": d, "causal": bool(causal)}


def grid_points(args, cpu, dtype):
    """The same grid flashport-bench builds with the same options."""
    pts = []
    if args.grid in ("fwd", "all"):
        hdims = args.hdim or ([128] if args.quick else [64, 128, 256])
        if args.seqlen:
            seqlens = args.seqlen
        elif args.quick:
            seqlens = [512, 1024] if cpu else [1024, 4096]
        else:
            seqlens = [512, 1024, 2048, 4096] if cpu else [512, 1024, 2048, 4096, 8192, 16384]
        tokens = args.tokens or (4096 if args.quick and cpu else 16384)
        passes = {"fwd": ["fwd"], "fwdbwd": ["fwdbwd"], "bwd": ["fwdbwd"], "both": ["fwd", "fwdbwd"]}[args.passes]
        causals = {"off": [0], "0": [0], "on": [1], "1": [1], "both": [0, 1]}[args.causal]
        for pas in passes:
            for d in hdims:
                for s in seqlens:
                    for b in args.batch or [0]:
                        for c in causals:
                            batch = b or max(1, tokens // s)
                            heads = args.heads or max(1, args.hidden // d)
                            pts.append(make_point("fwd", pas, dtype, batch, heads, heads, s, s, d, c))
    if args.grid in ("decode", "all"):
        hq, hk = (int(x) for x in args.gqa.split(":"))
        batches = args.decode_batch or ([1, 16] if args.quick else [1, 16, 64])
        kvs = args.kv or ([8192, 16384] if args.quick else [8192, 16384, 32768, 65536, 131072])
        for d in args.hdim or [128]:
            for b in batches:
                for kv in kvs:
                    pts.append(make_point("decode", "decode", dtype, b, hq, hk, 1, kv, d, 0))
    return pts


def points_from_file(path):
    with open(path) as f:
        doc = json.load(f)
    keys = ("grid", "pass", "dtype", "batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "hdim", "causal")
    seen, pts = set(), []
    for r in doc.get("results", []):
        pt = {k: r[k] for k in keys}
        key = tuple(pt[k] for k in keys)
        if key not in seen:
            seen.add(key)
            pts.append(pt)
    return pts


# ------------------------------------------------------------------------------------------------ running

def flops_of(pt):
    if pt["grid"] == "decode":
        return 4.0 * pt["batch"] * pt["heads_q"] * pt["seqlen_k"] * pt["hdim"]
    f = 4.0 * pt["batch"] * pt["heads_q"] * pt["seqlen_q"] * pt["seqlen_k"] * pt["hdim"]
    if pt["causal"]:
        f *= 0.5
    return 3.5 * f if pt["pass"] == "fwdbwd" else f


def kv_bytes_of(pt):
    return 2.0 * pt["batch"] * pt["seqlen_k"] * pt["heads_kv"] * pt["hdim"] * DTYPE_SIZE[pt["dtype"]]


def run_point(torch, pt, backend, device, args, llc, budget):
    from torch.nn.functional import scaled_dot_product_attention as sdpa

    res = dict(pt)
    res.update(backend=backend, status="ok", flops=flops_of(pt))
    dt = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[pt["dtype"]]
    b, hq, hk, sq, sk, d = (pt[k] for k in ("batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "hdim"))
    bwd, decode = pt["pass"] == "fwdbwd", pt["grid"] == "decode"
    es = DTYPE_SIZE[pt["dtype"]]
    nq, nkv = b * sq * hq * d, b * sk * hk * d
    # q, k, v, out (+ dout, dq, dk, dv and autograd's saved tensors for fwd+bwd)
    set_bytes = (2 * nq + 2 * nkv) * es + ((3 * nq + 2 * nkv) * es + b * hq * sq * 4 if bwd else 0)
    want = min(16, max(2, math.ceil(4 * llc / set_bytes)))
    sets = min(want, int(budget // set_bytes))
    if sets < 1:
        res.update(status="skipped", reason=f"one set of buffers needs {set_bytes / 1e9:.1f} GB, over the "
                                               f"{budget / 1e9:.1f} GB budget (--mem-gb)")
        return res
    res.update(sets=sets, set_bytes=set_bytes)

    def tensor(seqlen, heads):
        if args.layout == "bshd":
            return torch.empty(b, seqlen, heads, d, dtype=dt, device=device).uniform_(-1, 1).transpose(1, 2)
        return torch.empty(b, heads, seqlen, d, dtype=dt, device=device).uniform_(-1, 1)

    try:
        data = []
        for _ in range(sets):
            q, k, v = tensor(sq, hq), tensor(sk, hk), tensor(sk, hk)
            if bwd:
                q.requires_grad_(True)
                k.requires_grad_(True)
                v.requires_grad_(True)
            dout = tensor(sq, hq) if bwd else None
            data.append((q, k, v, dout))
    except RuntimeError as e:  # out of memory
        res.update(status="skipped", reason=f"allocation failed: {e}".splitlines()[0])
        return res

    gqa = hq != hk
    kwargs = {"is_causal": bool(pt["causal"])}
    if gqa:
        kwargs["enable_gqa"] = True

    ctx = None
    if backend != "default":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        kind = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
                "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}[backend]
        ctx = lambda: sdpa_kernel([kind])  # noqa: E731
    else:
        import contextlib
        ctx = contextlib.nullcontext

    def call(i):
        q, k, v, dout = data[i % sets]
        if bwd:
            out = sdpa(q, k, v, **kwargs)
            torch.autograd.grad(out, (q, k, v), dout)
        else:
            with torch.no_grad():
                sdpa(q, k, v, **kwargs)

    cuda = device.startswith("cuda")
    repeats = args.repeats or (20 if cuda else 10 if decode else 5)
    warmup = args.warmup if args.warmup >= 0 else (5 if cuda else 2 if decode else 1)
    times = []
    try:
        with ctx():
            for i in range(warmup + repeats):
                if cuda:
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                call(i)
                if cuda:
                    torch.cuda.synchronize()
                t = time.perf_counter() - t0
                if i >= warmup:
                    times.append(t)
    except RuntimeError as e:
        msg = str(e).strip().splitlines()
        res.update(status="unsupported", reason=(msg[0] if msg else repr(e))[:400])
        return res
    med = statistics.median(times)
    res.update(repeats=repeats, ms=med * 1e3, ms_min=min(times) * 1e3, ms_max=max(times) * 1e3,
               gflops=res["flops"] / med * 1e-9)
    if decode:
        res.update(kv_bytes=kv_bytes_of(pt), gbps=kv_bytes_of(pt) / med * 1e-9)
    return res


def describe(res):
    shape = (f"{res['grid'] if res['grid'] == 'decode' else res['pass']} {res['dtype']} b={res['batch']} "
             f"hq={res['heads_q']} hk={res['heads_kv']} sq={res['seqlen_q']} sk={res['seqlen_k']} d={res['hdim']}"
             f"{' causal' if res['causal'] else ''} [{res['backend']}]")
    if res["status"] != "ok":
        return f"{shape}: {res['status']}: {res.get('reason', '')}"
    tail = f" {res['gbps']:.1f} GB/s" if res["grid"] == "decode" else f" {res['gflops']:.1f} GFLOP/s"
    return f"{shape}: {res['ms']:.3f} ms{tail}"


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        import torch
    except ImportError as e:
        print(f"torch_sdpa_bench: torch is not importable here ({e}); install it (pip install torch)",
              file=sys.stderr)
        return 3
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device == "cpu"
    if cpu:
        threads = args.threads or int(os.environ.get("OMP_NUM_THREADS", "0") or 0) or len(os.sched_getaffinity(0))
        torch.set_num_threads(threads)
        llc = llc_bytes()
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        name = "cpu"
    else:
        threads = 0
        props = torch.cuda.get_device_properties(torch.device(device))
        llc = getattr(props, "L2_cache_size", 0) or 50 << 20
        total = props.total_memory
        name = props.name
    budget = args.mem_gb * 1e9 if args.mem_gb > 0 else 0.5 * total
    dtype = args.dtype or ("fp32" if cpu else "bf16")
    backends = (args.backends or ("flash" if cpu else "flash,cudnn,efficient")).split(",")

    pts = points_from_file(args.points) if args.points else grid_points(args, cpu, dtype)
    load_before = os.getloadavg()[0]
    results = []
    for pt in pts:
        for backend in backends:
            res = run_point(torch, pt, backend, device, args, llc, budget)
            results.append(res)
            print(f"[torch-sdpa] {describe(res)}", file=sys.stderr if args.json else sys.stdout, flush=True)
            if cpu or device.startswith("cuda"):
                import gc
                gc.collect()
                if not cpu:
                    torch.cuda.empty_cache()
    if args.json:
        doc = {"tool": "torch_sdpa_bench", "torch": torch.__version__, "device": device, "device_name": name,
               "threads": threads, "layout": args.layout, "backends": backends,
               "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
               "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "flop_convention": FLOP_CONVENTION,
               "results": results}
        json.dump(doc, sys.stdout, indent=1)
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
