#!/bin/sh
# The mma.sync backward (cuda/kernels/bwd_sm80.cu) through nvcc/ptxas for sm_80 and sm_90 with -Xptxas -v, as
# NVRTC builds it at plan time (same source and defines as cuda_bwd.c passes): registers per kernel printed, and a
# failure where a kernel spills more than LIMIT bytes. Its kernels run at the 255-register cap by design, so a
# few dozen bytes of spill come and go with the ptxas version (d128 with softcap + ALiBi + dropout spilled 36-120
# bytes before head dims over 128 were taken); the pairs of warps above 128 (FA_DSPLIT 2) are checked here so
# that a change which makes them spill hundreds fails without a GPU.
#
#   sh check_bwd_sm80_ptxas.sh NVCC KERNEL_DIR OUT_DIR
set -eu
nvcc=$1 kdir=$2 out=$3
mkdir -p "$out"
LIMIT=128
fail=0
# dqk dv warps bkv bq atomic features(0: causal only, 1: + softcap, ALiBi, dropout): the planner's picks on an
# H100 (d128 64x128 w8, d160-d256 64x64 w8 in pairs), sm_80's (32x64 w8) and the 99 KB tile (32x32 w4)
for spec in "128 128 8 128 64 1 0" "128 128 8 128 64 0 0" "160 160 8 64 64 1 0" "192 192 8 64 64 0 0" \
            "256 256 8 64 64 1 0" "256 256 8 64 64 0 0" "256 256 8 64 64 1 1" "256 256 8 64 64 0 1" \
            "256 256 8 64 32 1 1" "240 240 4 32 32 0 1" "176 176 8 64 64 1 0" "256 128 8 64 64 0 0"; do
  set -- $spec
  split=1
  if [ "$1" -gt 128 ] || [ "$2" -gt 128 ]; then split=2; fi
  for arch in sm_80 sm_90; do
    name=bwd_sm80_${arch}_d$1x$2_w$3_$4x$5_atomic$6_feat$7
    if ! "$nvcc" -arch=$arch -cubin -std=c++17 -I"$kdir" -DFA_BF16=1 -DFA_DQK=$1 -DFA_DV=$2 -DFA_WARPS=$3 \
        -DFA_BKV=$4 -DFA_BQ=$5 -DFA_DQ_ATOMIC=$6 -DFA_DSPLIT=$split -DFA_DROPOUT=$7 -DFA_SOFTCAP=$7 -DFA_ALIBI=$7 \
        -DFA_LOCAL=1 -DFA_VARLEN=0 -Xptxas -v -x cu "$kdir/bwd_sm80.cu" -o "$out/$name.cubin" >"$out/$name.log" 2>&1
    then
      cat "$out/$name.log" >&2
      echo "FAIL: $name does not compile" >&2
      fail=1
      continue
    fi
    res=$(awk '/Compiling entry function/ { k = $(NF - 2); gsub("\047", "", k) }
               /bytes spill stores/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "bytes" && $(i + 2) == "spill" && $(i + 3) ~ /^stores/) s[k] = $i }
               /Used [0-9]+ registers/ { for (i = 1; i <= NF; i++) if ($i == "Used") r[k] = $(i + 1) }
               END { for (k in r) printf "%s %s regs %s B spilled; ", k, r[k], (k in s ? s[k] : 0) }' "$out/$name.log")
    echo "$name: $res"
    if awk -v lim=$LIMIT '/bytes spill stores/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "bytes" && $(i + 2) == "spill" && $(i + 3) ~ /^stores/ && $i + 0 > lim) bad = 1 }
                          END { exit bad ? 0 : 1 }' "$out/$name.log"; then
      echo "FAIL: $name spills more than $LIMIT bytes" >&2
      fail=1
    fi
  done
done
exit $fail
