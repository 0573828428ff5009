#!/bin/sh
# Compiles the backward the HIP plugin runs (cuda/kernels/bwd_f32.cu, shared with the CUDA backend through
# cuda/kernels/fa_vendor.cuh) with hipcc for one AMD target (device code only: no GPU or ROCm runtime needed), for
# fp32, fp16 and bf16 storage and a few head dims / tiles / feature switches, and checks each code object: it is for
# that target, its three kernels run wavefronts of 64, and none uses scratch (a private segment or VGPR spills).
# SGPR spills go to VGPR lanes, not memory: printed, not failed. hiprtc compiles the same source at plan time
# (tests/hip/test_hip_compile.c for gfx90a); this covers gfx940 too and prints VGPRs and spills per kernel.
#
#   sh check_bwd_compile.sh HIPCC LLVM_READELF KERNEL_DIR ARCH OUT_DIR
set -eu
hipcc=$1 readelf=$2 kdir=$3 arch=$4 out=$5
mkdir -p "$out"
fail=0
# dqk dv bq bkv softcap alibi local varlen dropout (FA_L16 for 16-bit storage above d128, as fa_gpu_bwd_l16)
for spec in "64 64 64 64 1 1 1 0 0" "128 128 32 32 1 1 1 0 1" "128 128 64 64 0 0 1 1 0" "256 256 16 16 1 1 1 1 1" \
            "256 256 32 32 0 0 0 0 0" "36 100 32 16 0 1 0 1 0"; do
  set -- $spec
  for storage in 0 1 2; do
    l16=0
    if [ "$storage" != 0 ] && { [ "$1" -gt 128 ] || [ "$2" -gt 128 ]; }; then l16=1; fi
    name=bwd_f32_${arch}_d$1x$2_$3x$4_s$storage
    obj=$out/$name.o
    # the AMD platform explicitly: hipcc picks NVIDIA where it finds nvcc (check_fwd_compile.sh)
    if ! HIP_PLATFORM=amd "$hipcc" -x hip --offload-arch="$arch" --cuda-device-only --no-gpu-bundle-output -O3 \
        -Wall -Wextra -Werror -I"$kdir" -DFA_DQK=$1 -DFA_DV=$2 -DFA_BQ=$3 -DFA_BKV=$4 -DFA_SOFTCAP=$5 -DFA_ALIBI=$6 \
        -DFA_LOCAL=$7 -DFA_VARLEN=$8 -DFA_DROPOUT=$9 -DFA_STORAGE=$storage -DFA_L16=$l16 -c "$kdir/bwd_f32.cu" \
        -o "$obj"; then
      echo "FAIL: $name does not compile" >&2
      fail=1
      continue
    fi
    "$readelf" --notes "$obj" >"$out/$name.notes"
    if ! grep -q "amdhsa.target: *amdgcn-amd-amdhsa--$arch" "$out/$name.notes"; then
      echo "FAIL: $name is not a $arch code object" >&2
      fail=1
    fi
    for k in fa_bwd_pre_f32 fa_bwd_dkdv_f32 fa_bwd_dq_f32; do
      if ! grep -q "\.name: *$k\$" "$out/$name.notes"; then
        echo "FAIL: $name has no kernel $k" >&2
        fail=1
      fi
    done
    if [ "$(grep -c '\.wavefront_size: *64' "$out/$name.notes")" != 3 ]; then
      echo "FAIL: $name does not run wavefronts of 64 in all three kernels" >&2
      fail=1
    fi
    if grep -E "\.private_segment_fixed_size: *[1-9]|\.vgpr_spill_count: *[1-9]" "$out/$name.notes" >&2; then
      echo "FAIL: $name uses scratch" >&2
      fail=1
    fi
    # per kernel in the notes' order: name, VGPRs, SGPR spills
    stats=$(awk '/\.name:/ { n = $NF } /\.sgpr_spill_count:/ { s = $NF } /\.vgpr_count:/ { v = $NF }
                 /\.wavefront_size:/ { printf "%s %s VGPRs (%s SGPR spills to lanes); ", n, v, s }' "$out/$name.notes")
    echo "$arch: $name: $stats"
  done
done
exit $fail
