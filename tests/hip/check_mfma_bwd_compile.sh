#!/bin/sh
# Compiles the HIP backend's MFMA backward (hip/kernels/bwd_mfma.hip) with hipcc for one AMD target (device code
# only: no GPU or ROCm runtime needed), -Werror, for the specialisations the host picks (fp16/bf16, d32-d128, dqk != dv,
# 2 and 4 waves, 32- and 64-row tiles, causal/window on and off, varlen), and checks each code object: it is for
# that target, runs wavefronts of 64, holds the MFMA instructions of its type (the target's spelling) and at least
# one tile's worth in each of the dK/dV and dQ kernels, and uses no scratch (private segment) and spills nothing
# (SGPR spills would go to VGPR lanes, not memory, but they cost registers and instructions: fp16's software
# rounding once caused some). Prints VGPRs, AGPRs and LDS per kernel. hiprtc compiles the same source at plan time.
#
#   sh check_mfma_bwd_compile.sh HIPCC LLVM_OBJDUMP LLVM_READELF KERNEL_DIR ARCH OUT_DIR
set -eu
hipcc=$1 objdump=$2 readelf=$3 kdir=$4 arch=$5 out=$6
mkdir -p "$out"
. "$(dirname "$0")/code_object_checks.sh"
fail=0
# dqk dv waves rows local varlen (hip_select_mfma.c's rule: 64-row tiles at d64, 32 above)
for spec in "128 128 4 32 1 0" "128 128 2 32 0 1" "96 96 4 32 1 0" "64 64 4 64 1 0" "64 64 2 64 0 1" \
            "32 32 4 64 1 0" "128 64 4 32 1 0" "32 96 2 64 0 0"; do
  set -- $spec
  for storage in 1 2; do
    name=bwd_mfma_${arch}_d$1x$2_w$3_r$4_l$5_v$6_t$storage
    compile_code_object "$name" bwd_mfma.hip -DFA_DQK=$1 -DFA_DV=$2 -DFA_WAVES=$3 -DFA_TR=$4 -DFA_LOCAL=$5 \
        -DFA_VARLEN=$6 -DFA_STORAGE=$storage \
        || { rc=$?; fail=1; [ $rc -eq 1 ] || continue; }
    case $storage$arch in
      1gfx*) pat='v_mfma_f32_32x32x8_?f16' ;;
      2gfx90a) pat=v_mfma_f32_32x32x8bf16_1k ;;
      2gfx94*) pat=v_mfma_f32_32x32x8_bf16 ;;
      *) echo "unknown target $arch" >&2; exit 2 ;;
    esac
    # per kernel: the MFMAs between its symbol and the next one's
    for k in fa_bwd_dkdv_mfma fa_bwd_dq_mfma; do
      n=$(awk -v k="<$k>:" -v pat="^[[:space:]]*$pat[[:space:]]" '$0 ~ /^[0-9a-f]+ <.*>:$/ { on = ($2 == k) }
                                                                   on && $0 ~ pat { c++ } END { print c + 0 }' \
          "$out/$name.s")
      total=$(awk -v k="<$k>:" '$0 ~ /^[0-9a-f]+ <.*>:$/ { on = ($2 == k) } on && /^[[:space:]]*v_mfma/ { c++ }
                                END { print c + 0 }' "$out/$name.s")
      # one tile: S and dP (rows / 32 x d / 8 each), then dV^T and dK^T (rows / 8 x d / 32 each; dQ: dQ^T only)
      if [ $k = fa_bwd_dkdv_mfma ]; then want=$(( $4 / 32 * ($1 + $2) / 8 + $4 / 8 * ($1 + $2) / 32 ))
      else want=$(( $4 / 32 * ($1 + $2) / 8 + $4 / 8 * $1 / 32 )); fi
      [ "$n" -ge "$want" ] && [ "$n" -eq "$total" ] ||
        { echo "FAIL: $name $k has $n $pat of $total MFMAs (a tile needs $want)" >&2; fail=1; }
      line=$(awk -v k="$k" '/\.agpr_count:/ { a = $NF } /\.group_segment_fixed_size:/ { l = $NF }
                             /\.name:/ { nm = $NF } /\.vgpr_count:/ { v = $NF }
                             /\.vgpr_spill_count:/ { if (nm == k) printf "vgpr_count %s (arch + acc), agpr_count %s, " \
                                                      "LDS %s B\n", v, a, l }' "$out/$name.notes")
      echo "$arch: $name $k: $n $pat (tile $want), $line, no scratch or spills"
    done
  done
done
exit $fail
