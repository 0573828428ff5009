#!/bin/sh
# The CUDA decode kernel (cuda/kernels/fwd_sm80.cu, FA_KSPLIT) through nvcc for sm_90 with the defines NVRTC gets
# from cuda_backend.c for the planner's decode pick (b16/b64, GQA 32:8, d128, bf16, no mask: 16x64, keys across
# 4 warps, 3 stages), its SASS, and the main K/V loop's instructions by opcode (static: both the masked and the
# unmasked paths are in it). No GPU needed. cuobjdump and nvdisasm: the toolkit's, or PyPI's nvidia-cuda-cuobjdump
# and nvidia-cuda-nvdisasm (CUOBJDUMP=path; nvdisasm on PATH).
#
#   sh bench/tools/decode_sass.sh [OUT_DIR] [EXTRA nvcc args, e.g. -DFA_BKV=128 -DFA_STAGES=2]
#   TAKEN=4da0,5150 sh bench/tools/decode_sass.sh ...   also walks one pass through the loop from its top, taking
#       the conditional branches at those addresses and no other, and counts that path's instructions (pick the
#       branches of an interior tile from OUT_DIR/loop.sass: the unmasked softmax, no O rescale)
#   CUBIN=file sh bench/tools/decode_sass.sh OUT_DIR   the same for a cubin NVRTC built (the JIT cache keeps them
#       as $FLASHPORT_CACHE_DIR, else $XDG_CACHE_HOME/flashport or ~/.cache/flashport, /cuda/<hash>.cubin): the
#       SASS that ran, where the host's NVRTC differs from this nvcc
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-/tmp/decode_sass}
[ $# -gt 0 ] && shift
nvcc=${NVCC:-nvcc}
cuobjdump=${CUOBJDUMP:-$(dirname "$(command -v "$nvcc")")/cuobjdump}
mkdir -p "$out"
if [ -n "${CUBIN:-}" ]; then
  cp "$CUBIN" "$out/fwd.cubin"
else
"$nvcc" -cubin -arch=sm_90 -std=c++17 -lineinfo -I"$here/cuda/kernels" \
  -DFA_BF16=1 -DFA_DQK=128 -DFA_DQK_REAL=128 -DFA_DV=128 -DFA_DV_REAL=128 -DFA_WARPS=4 -DFA_BKV=64 -DFA_MT=1 \
  -DFA_STAGES=3 -DFA_MIN_BLOCKS=1 -DFA_SOFTCAP=0 -DFA_ALIBI=0 -DFA_LOCAL=0 -DFA_LAZY=1 -DFA_VARLEN=0 -DFA_PAGED=0 \
  -DFA_PACK=1 -DFA_GROUP=4 -DFA_SPLIT=0 -DFA_DROPOUT=0 -DFA_L2_PREFETCH=256 -DFA_KSPLIT=1 -DFA_ROWS8=1 "$@" \
  -Xptxas -v -x cu "$here/cuda/kernels/fwd_sm80.cu" -o "$out/fwd.cubin" >"$out/ptxas.log" 2>&1 ||
  { cat "$out/ptxas.log" >&2; exit 1; }
grep -E "registers|spill" "$out/ptxas.log" | sed -n '1,6p'
fi
"$cuobjdump" -sass -fun fa_fwd_sm80 "$out/fwd.cubin" >"$out/fwd.sass"
# The main loop: the longest backward branch whose body holds HMMA; its instructions by opcode.
python3 - "$out" <<'PY'
import os, re, sys, collections
out = sys.argv[1]
ins = []
for line in open(out + "/fwd.sass"):
    m = re.match(r"\s*/\*([0-9a-f]{4,})\*/\s+(.*?);", line)
    if m: ins.append((int(m.group(1), 16), m.group(2).strip()))
best = None
for a, t in ins:
    m = re.search(r"BRA.*?(0x[0-9a-f]+)", t)
    if not m: continue
    tgt = int(m.group(1), 16)
    body = [x for x in ins if tgt <= x[0] <= a]
    if tgt < a and any("HMMA" in x[1] for x in body) and (best is None or len(body) > len(best)): best = body
best = best or []
with open(out + "/loop.sass", "w") as f:
    for a, t in best: f.write("/*%04x*/ %s\n" % (a, t))
ops = collections.Counter(re.sub(r"^@!?U?P[0-9T]\s+", "", t).split()[0].split(".")[0] for a, t in best)
print("loop: %d instructions (kernel %d)" % (len(best), len(ins)))
for op, n in ops.most_common(): print("%6d %s" % (n, op))
taken = {int(a, 16) for a in os.environ.get("TAKEN", "").split(",") if a}
if taken:
    at = {a: i for i, (a, t) in enumerate(best)}
    i, path = 0, []
    while i < len(best):
        a, t = best[i]
        path.append(t)
        m = re.search(r"BRA\s+(0x[0-9a-f]+)", t)
        if m and i < len(best) - 1 and (not t.startswith("@") or a in taken):
            i = at[int(m.group(1), 16)]
            continue
        if m and i == len(best) - 1: break
        i += 1
    ops = collections.Counter(re.sub(r"^@!?U?P[0-9T]\s+", "", t).split()[0].split(".")[0] for t in path)
    print("path through the loop (TAKEN=%s): %d instructions" % (os.environ["TAKEN"], len(path)))
    print("  " + " ".join("%s %d" % kv for kv in ops.most_common()))
PY
