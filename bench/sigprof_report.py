#!/usr/bin/env python3
"""Table of functions from a bench/sigprof.c sample file.

  sigprof_report.py PROFILE [--top N] [--map REMOTE_PREFIX=LOCAL_PREFIX ...]

Each sampled address is placed in the mapping of /proc/self/maps it fell in, turned into that file's virtual
address through its PT_LOAD program headers (readelf), and named by the nearest preceding function symbol
(nm). --map rewrites the path a library had on the machine that ran it to where the same file is here, so a
profile taken on a lent machine can be read on the machine that built the binaries.
"""
import argparse
import bisect
import collections
import os
import re
import subprocess
import sys


def read_profile(path):
    samples, maps, part = [], [], None
    with open(path) as f:
        for line in f:
            if line.startswith("# samples"):
                part = "samples"
            elif line.startswith("# maps"):
                part = "maps"
            elif part == "samples":
                samples.append(int(line, 16))
            elif part == "maps":
                m = re.match(r"([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \d+\s+(.*)", line)
                if m and "x" in m.group(3) and m.group(5).startswith("/"):
                    maps.append((int(m.group(1), 16), int(m.group(2), 16), int(m.group(4), 16), m.group(5).strip()))
    return samples, sorted(maps)


def load_segments(path):
    """[(file offset, vaddr, size)] of the file's PT_LOAD headers."""
    out = subprocess.run(["readelf", "-lW", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True).stdout
    segs = []
    for line in out.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            segs.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))
    return segs


def symbols(path):
    out = subprocess.run(["nm", "--defined-only", "-n", path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                         text=True).stdout
    addrs, names = [], []
    for line in out.splitlines():
        f = line.split()
        if len(f) == 3 and f[1] in "tTwWiI":
            addrs.append(int(f[0], 16))
            names.append(f[2])
    return addrs, names


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--map", action="append", default=[], help="REMOTE_PREFIX=LOCAL_PREFIX")
    args = p.parse_args()
    samples, maps = read_profile(args.profile)
    rewrites = [m.split("=", 1) for m in args.map]
    starts = [m[0] for m in maps]
    cache, counts = {}, collections.Counter()
    for pc in samples:
        i = bisect.bisect_right(starts, pc) - 1
        if i < 0 or pc >= maps[i][1]:
            counts["[unknown]"] += 1
            continue
        start, _, off, path = maps[i]
        local = path
        for remote, here in rewrites:
            if path.startswith(remote):
                local = here + path[len(remote):]
        if local not in cache:
            cache[local] = (load_segments(local), symbols(local)) if os.path.exists(local) else None
        info = cache[local]
        lib = os.path.basename(path)
        if not info:
            counts[f"[{lib}]"] += 1
            continue
        fo = pc - start + off
        va = next((fo - so + sv for so, sv, sz in info[0] if so <= fo < so + sz), fo)
        addrs, names = info[1]
        j = bisect.bisect_right(addrs, va) - 1
        counts[f"{names[j] if j >= 0 else '?'} [{lib}]"] += 1
    total = sum(counts.values())
    print(f"{total} samples")
    for name, n in counts.most_common(args.top):
        print(f"{100.0 * n / total:6.2f}%  {n:7d}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
