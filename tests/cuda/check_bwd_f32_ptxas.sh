#!/bin/sh
# The SIMT backward (cuda/kernels/bwd_f32.cu) through nvcc/ptxas for sm_80 and sm_90 with -Xptxas -v: what NVRTC
# builds at plan time (same source and defines), checked for spills and a local-memory stack and printed with each
# kernel's registers. test_cuda_compile compiles the same through NVRTC, which reports no resource usage.
#
#   sh check_bwd_f32_ptxas.sh NVCC KERNEL_DIR OUT_DIR
set -eu
nvcc=$1 kdir=$2 out=$3
mkdir -p "$out"
fail=0
# dqk dv bq bkv storage dropout varlen (the family's largest tiles per head dim, and the small ones)
for spec in "64 64 64 64 0 1 0" "128 128 64 64 0 1 1" "128 128 32 32 0 0 0" "256 256 32 32 0 1 0" \
            "256 256 16 16 0 0 1" "256 256 64 16 2 1 0" "200 72 64 16 1 0 1" "36 100 32 32 0 0 0" "96 96 64 64 1 1 0"; do
  set -- $spec
  l16=0
  if [ "$5" != 0 ] && { [ "$1" -gt 128 ] || [ "$2" -gt 128 ]; }; then l16=1; fi
  for arch in sm_80 sm_90; do
    name=bwd_f32_${arch}_d$1x$2_$3x$4_s$5_drop$6
    if ! "$nvcc" -arch=$arch -cubin -std=c++17 -I"$kdir" -DFA_DQK=$1 -DFA_DV=$2 -DFA_BQ=$3 -DFA_BKV=$4 -DFA_STORAGE=$5 \
        -DFA_L16=$l16 -DFA_DROPOUT=$6 -DFA_VARLEN=$7 -Xptxas -v -x cu "$kdir/bwd_f32.cu" -o "$out/$name.cubin" \
        >"$out/$name.log" 2>&1; then
      cat "$out/$name.log" >&2
      echo "FAIL: $name does not compile" >&2
      fail=1
      continue
    fi
    if grep -E "[1-9][0-9]* bytes (spill|stack)" "$out/$name.log" >&2; then
      echo "FAIL: $name spills" >&2
      fail=1
    fi
    regs=$(awk '/Compiling entry function/ { k = $(NF - 2); gsub("\047", "", k) } /Used [0-9]+ registers/ {
                  for (i = 1; i <= NF; i++) if ($i == "Used") printf "%s %s regs; ", k, $(i + 1) }' "$out/$name.log")
    echo "$name: $regs"
  done
done
exit $fail
