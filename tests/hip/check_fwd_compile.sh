#!/bin/sh
# Compiles the forward the HIP plugin runs (cuda/kernels/fwd_f32.cu, shared with the CUDA backend through
# cuda/kernels/fa_vendor.cuh) with hipcc for one AMD target (device code only: no GPU or ROCm runtime needed), for
# fp32, fp16 and bf16 storage and a few head dims / tiles / feature switches, and checks each code object: it is
# for that target, its kernel runs wavefronts of 64, and it uses no scratch (spills or run-time indexed arrays).
# hiprtc compiles the same source at plan time (tests/hip/test_hip_compile.c for gfx90a); this covers gfx940 too.
#
#   sh check_fwd_compile.sh HIPCC LLVM_READELF KERNEL_DIR ARCH OUT_DIR
set -eu
hipcc=$1 readelf=$2 kdir=$3 arch=$4 out=$5
mkdir -p "$out"
fail=0
# dqk dv bq bkv softcap alibi local varlen paged dropout split (split: the module holds fa_combine_f32 too)
for spec in "64 64 64 32 1 1 1 0 0 0 0" "128 128 64 64 0 0 1 0 0 0 0" "256 256 16 16 1 1 1 1 1 0 0" \
            "80 48 32 32 0 0 0 1 0 0 0" "128 128 64 32 0 0 1 0 0 1 0" "128 128 16 32 0 0 0 0 1 0 1" \
            "100 36 32 64 1 1 1 1 0 1 1"; do
  set -- $spec
  drop=${10} split=${11}
  for storage in 0 1 2; do
    name=fwd_f32_${arch}_d$1x$2_$3x$4_s${storage}_p${drop}_k${split}
    obj=$out/$name.o
    # the AMD platform explicitly: hipcc picks NVIDIA where it finds nvcc, and Debian's HIP NVIDIA headers do not
    # build with CUDA 13
    if ! HIP_PLATFORM=amd "$hipcc" -x hip --offload-arch="$arch" --cuda-device-only --no-gpu-bundle-output -O3 \
        -Wall -Wextra -Werror -I"$kdir" -DFA_DQK=$1 -DFA_DV=$2 -DFA_BQ=$3 -DFA_BKV=$4 -DFA_SOFTCAP=$5 -DFA_ALIBI=$6 \
        -DFA_LOCAL=$7 -DFA_VARLEN=$8 -DFA_PAGED=$9 -DFA_DROPOUT=$drop -DFA_SPLIT=$split -DFA_STORAGE=$storage -c "$kdir/fwd_f32.cu" -o "$obj"; then
      echo "FAIL: $name does not compile" >&2
      fail=1
      continue
    fi
    "$readelf" --notes "$obj" >"$out/$name.notes"
    if ! grep -q "amdhsa.target: *amdgcn-amd-amdhsa--$arch" "$out/$name.notes"; then
      echo "FAIL: $name is not a $arch code object" >&2
      fail=1
    fi
    if ! grep -q "\.wavefront_size: *64" "$out/$name.notes"; then
      echo "FAIL: $name does not run wavefronts of 64" >&2
      fail=1
    fi
    if grep -E "\.private_segment_fixed_size: *[1-9]|\.(v|s)gpr_spill_count: *[1-9]" "$out/$name.notes" >&2; then
      echo "FAIL: $name uses scratch" >&2
      fail=1
    fi
    if [ "$split" = 1 ] && ! grep -q "\.name: *fa_combine_f32" "$out/$name.notes"; then
      echo "FAIL: $name has no fa_combine_f32" >&2
      fail=1
    fi
    vgpr=$(awk '/\.vgpr_count:/ { print $NF; exit }' "$out/$name.notes")
    lds=$(awk '/\.group_segment_fixed_size:/ { print $NF; exit }' "$out/$name.notes")
    echo "$arch: $name vgpr_count $vgpr, static LDS $lds (the tile is dynamic LDS)"
  done
done
# the KV-cache append kernel shared with CUDA (cuda/kernels/append_sm80.cu): fp32, fp16, bf16; its rotary must not be
# contracted into FMAs (fa_mul_rn), or it would differ from the CPU's separately rounded products
for storage in 0 1 2; do
  name=append_${arch}_s$storage
  obj=$out/$name.o
  if ! HIP_PLATFORM=amd "$hipcc" -x hip --offload-arch="$arch" --cuda-device-only --no-gpu-bundle-output -O3 \
      -Wall -Wextra -Werror -I"$kdir" -DFA_STORAGE=$storage -c "$kdir/append_sm80.cu" -o "$obj"; then
    echo "FAIL: $name does not compile" >&2
    fail=1
    continue
  fi
  "$readelf" --notes "$obj" >"$out/$name.notes"
  if ! grep -q "\.name: *fa_append_sm80" "$out/$name.notes" || \
     grep -E "\.private_segment_fixed_size: *[1-9]" "$out/$name.notes" >&2; then
    echo "FAIL: $name: no fa_append_sm80, or it uses scratch" >&2
    fail=1
  fi
  echo "$arch: $name ok"
done
exit $fail
