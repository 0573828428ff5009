#!/bin/sh
# Compiles hip/kernels/mfma_probe.hip for one AMD target with hipcc (device code only: no GPU, no ROCm runtime
# needed) and checks the code object: it is for that target, it holds each of the four MFMA instructions the
# kernels use (in the target's spelling: gfx940 renames v_mfma_f32_32x32x8bf16_1k to v_mfma_f32_32x32x8_bf16),
# and no kernel uses scratch (a register array indexed at run time or spilled would).
#
#   sh check_mfma_compile.sh HIPCC LLVM_OBJDUMP LLVM_READELF SOURCE ARCH OUT_DIR
set -eu
hipcc=$1 objdump=$2 readelf=$3 src=$4 arch=$5 out=$6
mkdir -p "$out"
obj=$out/mfma_probe_$arch.o

# The AMD platform explicitly: hipcc picks NVIDIA where it finds nvcc, and Debian's HIP NVIDIA headers do not build
# with CUDA 13.
HIP_PLATFORM=amd "$hipcc" --offload-arch="$arch" --cuda-device-only --no-gpu-bundle-output -O3 -Wall -Wextra -Werror \
  -c "$src" -o "$obj"
"$objdump" -d --mcpu="$arch" "$obj" >"$out/mfma_probe_$arch.s"
"$readelf" --notes "$obj" >"$out/mfma_probe_$arch.notes"

fail=0
if ! grep -q "amdhsa.target: *amdgcn-amd-amdhsa--$arch" "$out/mfma_probe_$arch.notes"; then
  echo "FAIL: $obj is not a $arch code object" >&2
  fail=1
fi

# Mnemonic patterns: the f16 names gain an underscore on gfx94x in newer LLVM (v_mfma_f32_32x32x8_f16).
case $arch in
  gfx90a) bf32=v_mfma_f32_32x32x8bf16_1k bf16=v_mfma_f32_16x16x16bf16_1k ;;
  gfx94*) bf32=v_mfma_f32_32x32x8_bf16 bf16=v_mfma_f32_16x16x16_bf16 ;;
  *) echo "unknown target $arch" >&2; exit 2 ;;
esac
for pat in 'v_mfma_f32_32x32x8_?f16' "$bf32" 'v_mfma_f32_16x16x16_?f16' "$bf16"; do
  n=$(grep -cE "^[[:space:]]*$pat[[:space:]]" "$out/mfma_probe_$arch.s" || true)
  echo "$arch: $pat $n"
  [ "$n" -gt 0 ] || { echo "FAIL: no $pat in the $arch code object" >&2; fail=1; }
done
total=$(grep -c "^[[:space:]]*v_mfma" "$out/mfma_probe_$arch.s" || true)
kernels=$(grep -c "^ *\.name: *fa_probe_" "$out/mfma_probe_$arch.notes" || true)
echo "$arch: $total MFMA instructions in $kernels kernels"
[ "$kernels" -eq 8 ] || { echo "FAIL: expected the 8 probe kernels, found $kernels" >&2; fail=1; }

# Scratch: every kernel's private segment and spill counts must be 0.
if grep -E "\.private_segment_fixed_size: *[1-9]|\.(v|s)gpr_spill_count: *[1-9]" "$out/mfma_probe_$arch.notes" >&2; then
  echo "FAIL: a probe kernel uses scratch on $arch (see above)" >&2
  fail=1
fi
# Registers per kernel (the notes list .agpr_count first, then .name, then .vgpr_count).
awk -v arch="$arch" '/\.agpr_count:/ { agpr = $NF } /\.name:/ { name = $NF }
  /\.vgpr_count:/ { printf "%s: %-34s vgpr_count %s, agpr_count %s\n", arch, name, $NF, agpr }' "$out/mfma_probe_$arch.notes"
exit $fail
