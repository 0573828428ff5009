#!/bin/sh
# Compiles the HIP backend's MFMA forward (hip/kernels/fwd_mfma.hip) with hipcc for one AMD target (device code
# only: no GPU or ROCm runtime needed), -Werror, for a representative set of specialisations (fp16/bf16, d64/d128,
# causal on/off, softcap/ALiBi, varlen, paged, 32- and 16-row waves, one and two LDS stages), and checks each code
# object: it is for that target, runs wavefronts of 64, holds the MFMA instructions of its type and shape (the
# target's spelling), and uses no scratch (spills or run-time indexed register arrays). Prints VGPRs, AGPRs, LDS
# and the MFMA count per kernel. hiprtc compiles the same source at plan time (test_hip_compile, gfx90a).
#
#   sh check_mfma_fwd_compile.sh HIPCC LLVM_OBJDUMP LLVM_READELF KERNEL_DIR ARCH OUT_DIR
set -eu
hipcc=$1 objdump=$2 readelf=$3 kdir=$4 arch=$5 out=$6
mkdir -p "$out"
. "$(dirname "$0")/code_object_checks.sh"
fail=0
# dqk dv rows waves bkv stages softcap alibi local varlen paged
for spec in "128 128 32 4 64 1 0 0 1 0 0" "128 128 32 4 32 2 1 1 0 1 0" "64 64 32 4 64 2 0 0 1 0 1" \
            "64 64 32 2 64 2 0 0 0 0 0" "128 128 16 4 64 1 0 0 1 0 1" "64 64 16 4 32 2 1 1 0 0 0"; do
  set -- $spec
  for storage in 1 2; do
    name=fwd_mfma_${arch}_d$1x$2_r$3w$4_kv$5s$6_c$9_p${11}_t$storage
    compile_code_object "$name" fwd_mfma.hip -DFA_DQK=$1 -DFA_DV=$2 -DFA_ROWS=$3 -DFA_WAVES=$4 -DFA_BKV=$5 \
        -DFA_STAGES=$6 -DFA_SOFTCAP=$7 -DFA_ALIBI=$8 -DFA_LOCAL=$9 -DFA_VARLEN=${10} -DFA_PAGED=${11} \
        -DFA_STORAGE=$storage \
        || { rc=$?; fail=1; [ $rc -eq 1 ] || continue; }
    # the instruction of this type and shape (gfx94x spells the bf16 _1k ones v_mfma_f32_32x32x8_bf16 etc.)
    case $3$storage$arch in
      321gfx*) pat='v_mfma_f32_32x32x8_?f16' ;;
      322gfx90a) pat=v_mfma_f32_32x32x8bf16_1k ;;
      322gfx94*) pat=v_mfma_f32_32x32x8_bf16 ;;
      161gfx*) pat='v_mfma_f32_16x16x16_?f16' ;;
      162gfx90a) pat=v_mfma_f32_16x16x16bf16_1k ;;
      162gfx94*) pat=v_mfma_f32_16x16x16_bf16 ;;
      *) echo "unknown target $arch" >&2; exit 2 ;;
    esac
    n=$(grep -cE "^[[:space:]]*$pat[[:space:]]" "$out/$name.s" || true)
    total=$(grep -c "^[[:space:]]*v_mfma" "$out/$name.s" || true)
    # one tile: bkv / M x dqk / K for S^T plus dv / M x bkv / K for O^T (the loop body is unrolled once)
    if [ "$3" = 32 ]; then want=$(( $5 / 32 * $1 / 8 + $2 / 32 * $5 / 8 )); else want=$(( $5 / 16 * $1 / 16 + $2 / 16 * $5 / 16 )); fi
    [ "$n" -ge "$want" ] && [ "$n" -eq "$total" ] ||
      { echo "FAIL: $name has $n $pat of $total MFMAs (a tile needs $want)" >&2; fail=1; }
    vgpr=$(awk '/\.vgpr_count:/ { print $NF; exit }' "$out/$name.notes")
    agpr=$(awk '/\.agpr_count:/ { print $NF; exit }' "$out/$name.notes")
    lds=$(awk '/\.group_segment_fixed_size:/ { print $NF; exit }' "$out/$name.notes")
    echo "$arch: $name: $n $pat (tile $want), vgpr_count $vgpr (arch + acc), agpr_count $agpr, LDS $lds B, scratch 0"
  done
done
exit $fail
