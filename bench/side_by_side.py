#!/usr/bin/env python3
"""flashport vs torch SDPA, one invocation, one table.

Runs `flashport-bench <options> --json`, then torch_sdpa_bench.py on exactly the points flashport ran
(same dtype, same threads on the CPU), one after the other so they never share the cores, and prints one
table per grid with both throughputs and the ratio flashport / torch per point (> 1: flashport faster).

  side_by_side.py [--flashport-bench PATH] [--python PATH] [--torch-args "..."] [--save FILE]
                  [flashport-bench options: --grid/--decode/--hdim/--seqlen/--batch/--causal/--pass/...]

Example (the RESULTS.md headline): side_by_side.py --grid all --hdim 128 --seqlen 4096 --batch 1 --pass fwd
                                   --decode-batch 1,16 --kv 8k,16k,32k

--rounds N alternates the two N times (flashport, torch, flashport, torch, ...) and ends with the median ratio
per point over the rounds: on a shared host whose speed drifts by +-10 % within minutes, a pair of runs taken
seconds apart shares the drift, so the ratio of each pair is steadier than either throughput.
"""
import statistics
import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
KEY = ("grid", "pass", "dtype", "batch", "heads_q", "heads_kv", "seqlen_q", "seqlen_k", "hdim", "causal")
# Options of flashport-bench that torch_sdpa_bench.py takes too (the points themselves travel by file).
SHARED_WITH_TORCH = ("--repeats", "--warmup", "--mem-gb")


def find_flashport_bench(explicit):
    if explicit:
        return explicit
    found = shutil.which("flashport-bench")
    if found:
        return found
    for rel in ("../build/bench/flashport-bench", "../../../bin/flashport-bench"):  # build tree, install
        cand = os.path.normpath(os.path.join(HERE, rel))
        if os.access(cand, os.X_OK):
            return cand
    sys.exit("side_by_side: flashport-bench not found: put it on PATH or pass --flashport-bench PATH")


def run_json(cmd, what):
    print(f"[side-by-side] {what}: {' '.join(shlex.quote(c) for c in cmd)}", file=sys.stderr, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)  # progress lines stream on stderr
    try:
        return json.loads(proc.stdout), proc.returncode
    except json.JSONDecodeError:
        print(f"[side-by-side] {what} exited {proc.returncode} without a JSON document", file=sys.stderr)
        return None, proc.returncode


def throughput(r):
    """(value, unit) of one result: GB/s of K/V for decode, GFLOP/s otherwise."""
    if r is None or r.get("status") != "ok":
        return None, None
    return (r["gbps"], "GB/s") if r["grid"] == "decode" else (r["gflops"], "GFLOP/s")


def tile(r):
    c = r.get("config")
    if not c:
        return "-"
    t = f"{c['block_q']}x{c['block_kv']}"
    if c["num_splits"] > 1:
        t += f" s{c['num_splits']}"
    if r.get("bwd_tile"):
        t += f" b{r['bwd_tile']}"
    return t


def cell(r, frac_key):
    value, _ = throughput(r)
    if value is None:
        return f"{(r or {}).get('status', 'n/a')}", "", ""
    frac = r.get(frac_key)
    return f"{r['ms']:.2f}", f"{value:.1f}", (f"{100 * frac:.1f}%" if frac is not None else "-")


def print_tables(fp_doc, th_doc, out=sys.stdout):
    dev = {d["index"]: d for d in fp_doc.get("devices", [])}
    torch_by_key = {}
    for r in th_doc.get("results", []) if th_doc else []:
        torch_by_key.setdefault(tuple(r[k] for k in KEY), []).append(r)
    if th_doc:
        print(f"torch {th_doc['torch']} on {th_doc['device']} ({th_doc.get('threads') or '-'} threads, "
              f"layout {th_doc['layout']}, backends {','.join(th_doc['backends'])})", file=out)
    for grid in ("fwd", "decode"):
        rows = [r for r in fp_doc.get("results", []) if r["grid"] == grid]
        if not rows:
            continue
        for d in dev.values():
            for c in d.get("ceilings", []):
                if c["grid"] == grid:
                    print(f"\nmachine ceilings before this table: {d['name']} ({d['arch']}), {c['threads']} threads: "
                          f"fp32 FMA peak {c['fma_peak_gflops']:.1f} GFLOP/s (loop for the {c['isa']} kernels), "
                          f"read bandwidth {c['read_gbs']:.1f} GB/s; load average {c['load_average_before']:.2f}",
                          file=out)
        if grid == "fwd":
            print("forward / backward: GFLOP/s by FlashAttention's convention (fwd 4*b*h*s^2*d, /2 causal; "
                  "fwd+bwd 3.5x); peak% of the fp32 FMA peak", file=out)
            head = (f"{'pass':7} {'dtype':5} {'d':>4} {'seqlen':>6} {'b':>3} {'h':>3} {'causal':6} {'fp tile':14}"
                    f" {'fp ms':>9} {'fp GFLOP/s':>10} {'fp peak':>7} {'torch':9} {'th ms':>9} {'th GFLOP/s':>10}"
                    f" {'th peak':>7} {'fp/torch':>8}")
        else:
            print("decode (one query token): GB/s of K and V read; bw% of the measured read bandwidth", file=out)
            head = (f"{'dtype':5} {'b':>3} {'kv':>7} {'hq:hk':>6} {'d':>4} {'fp tile':14} {'fp ms':>9}"
                    f" {'fp GB/s':>8} {'fp bw':>7} {'torch':9} {'th ms':>9} {'th GB/s':>8} {'th bw':>7}"
                    f" {'fp/torch':>8}")
        print(head, file=out)
        frac_key = "frac_peak" if grid == "fwd" else "frac_bw"
        for r in rows:
            key = tuple(r[k] for k in KEY)
            for t in torch_by_key.get(key, [None]):
                if t is not None and t.get("status") == "ok":  # as a fraction of the same ceilings
                    if grid == "fwd" and r.get("peak_gflops"):
                        t = dict(t, frac_peak=t["gflops"] / r["peak_gflops"])
                    if grid == "decode" and r.get("read_gbs"):
                        t = dict(t, frac_bw=t["gbps"] / r["read_gbs"])
                fp_ms, fp_v, fp_f = cell(r, frac_key)
                th_ms, th_v, th_f = cell(t, frac_key)
                a, b = throughput(r)[0], throughput(t)[0]
                ratio = f"{a / b:.2f}" if a and b else "-"
                backend = t["backend"] if t else "-"
                if grid == "fwd":
                    print(f"{'fwd' if r['pass'] == 'fwd' else 'fwd+bwd':7} {r['dtype']:5} {r['hdim']:>4} "
                          f"{r['seqlen_q']:>6} {r['batch']:>3} {r['heads_q']:>3} {'yes' if r['causal'] else 'no':6} "
                          f"{tile(r):14} {fp_ms:>9} {fp_v:>10} {fp_f:>7} {backend:9} {th_ms:>9} {th_v:>10} {th_f:>7} "
                          f"{ratio:>8}", file=out)
                else:
                    print(f"{r['dtype']:5} {r['batch']:>3} {r['seqlen_k']:>7} {r['heads_q']:>3}:{r['heads_kv']:<2} "
                          f"{r['hdim']:>4} {tile(r):14} {fp_ms:>9} {fp_v:>8} {fp_f:>7} {backend:9} {th_ms:>9} "
                          f"{th_v:>8} {th_f:>7} {ratio:>8}", file=out)
                for who, x in (("flashport", r), ("torch", t)):
                    if x is not None and x.get("status") not in ("ok", None):
                        print(f"    {who}: {x['status']}: {x.get('reason', '')}", file=out)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--flashport-bench", help="the flashport-bench executable (default: PATH, then the build tree)")
    p.add_argument("--python", default=sys.executable, help="the Python that has torch (default: this one)")
    p.add_argument("--torch-args", default="", help="extra options for torch_sdpa_bench.py, e.g. '--layout bhsd'")
    p.add_argument("--save", help="write both JSON documents to this file")
    p.add_argument("--from-json", help="print the table from a file written by --save; run nothing")
    p.add_argument("--rounds", type=int, default=1, help="alternate flashport and torch this many times and "
                   "print the median ratio per point (default 1)")
    args, fp_args = p.parse_known_args()
    if args.rounds < 1:
        p.error(f"--rounds {args.rounds}: must be at least 1")

    if args.from_json:
        with open(args.from_json) as f:
            both = json.load(f)
        rounds = both.get("rounds", [both])
        for rd in rounds:
            print_tables(rd["flashport"], rd.get("torch"))
        if len(rounds) > 1:
            print_ratio_summary(rounds)
        return 0

    bench = find_flashport_bench(args.flashport_bench)
    rounds, rc = [], 0
    for n in range(args.rounds):
        fp_doc, th_doc, fp_rc = run_round(bench, fp_args, args)
        if fp_doc is None:
            return 2
        rc |= fp_rc
        if args.rounds > 1:
            print(f"\nround {n + 1} of {args.rounds}")
        print_tables(fp_doc, th_doc)
        rounds.append({"flashport": fp_doc, "torch": th_doc})
    if args.rounds > 1:
        print_ratio_summary(rounds)
    if args.save:
        with open(args.save, "w") as f:
            json.dump(rounds[0] if args.rounds == 1 else {"rounds": rounds}, f, indent=1)
    return 1 if rc else 0


def run_round(bench, fp_args, args):
    """One flashport-bench run, then torch on exactly its points: (flashport doc, torch doc or None, rc)."""
    fp_doc, fp_rc = run_json([bench, *fp_args, "--json"], "flashport-bench")
    if fp_doc is None:
        return None, None, fp_rc
    cpu = any(d["backend"] == "cpu" and "skipped" not in d for d in fp_doc.get("devices", []))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as tmp:
        json.dump(fp_doc, tmp)
    try:
        cmd = [args.python, os.path.join(HERE, "torch_sdpa_bench.py"), "--points", tmp.name, "--json"]
        if cpu:
            cmd += ["--device", "cpu", "--threads", str(fp_doc.get("omp_threads", 0) or os.cpu_count())]
        for i, a in enumerate(fp_args):
            if a in SHARED_WITH_TORCH and i + 1 < len(fp_args):
                cmd += [a, fp_args[i + 1]]
        cmd += shlex.split(args.torch_args)
        th_doc, _ = run_json(cmd, "torch_sdpa_bench")  # None (no torch): flashport's columns alone
    finally:
        os.unlink(tmp.name)
    return fp_doc, th_doc, fp_rc


def point_name(r):
    if r["grid"] == "decode":
        return f"decode {r['dtype']} b{r['batch']} kv{r['seqlen_k']} {r['heads_q']}:{r['heads_kv']} d{r['hdim']}"
    return (f"{'fwd' if r['pass'] == 'fwd' else 'fwd+bwd'} {r['dtype']} d{r['hdim']} s{r['seqlen_q']} "
            f"b{r['batch']} h{r['heads_q']}{' causal' if r['causal'] else ''}")


def print_ratio_summary(rounds, out=sys.stdout):
    """Per point: the flashport / torch ratio of every round, their median, min and max."""
    ratios, order = {}, []
    for rd in rounds:
        torch_by_key = {}
        for t in (rd["torch"] or {}).get("results", []):
            torch_by_key.setdefault(tuple(t[k] for k in KEY), t)
        for r in rd["flashport"].get("results", []):
            key = tuple(r[k] for k in KEY)
            a, b = throughput(r)[0], throughput(torch_by_key.get(key))[0]
            if key not in ratios:
                ratios[key], order = [], order + [(key, point_name(r))]
            if a and b:
                ratios[key].append(a / b)
    print(f"\nflashport / torch over {len(rounds)} alternating rounds (> 1: flashport faster)", file=out)
    print(f"{'point':48} {'median':>7} {'min':>6} {'max':>6}  per round", file=out)
    for key, name in order:
        v = ratios[key]
        if not v:
            print(f"{name:48} {'-':>7}", file=out)
            continue
        print(f"{name:48} {statistics.median(v):7.2f} {min(v):6.2f} {max(v):6.2f}  "
              f"{' '.join(f'{x:.2f}' for x in v)}", file=out)


if __name__ == "__main__":
    sys.exit(main())
