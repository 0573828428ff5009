# Shared by the MFMA compile checks (check_mfma_fwd_compile.sh, check_mfma_bwd_compile.sh), sourced after they
# set hipcc, objdump, readelf, kdir, arch and out.
#
# compile_code_object NAME SOURCE DEFINE...: compiles kernels/SOURCE with hipcc for $arch (device code only, the
# AMD platform explicitly: hipcc picks NVIDIA where it finds nvcc), -O3 -Werror, into $out/NAME.o, writes its
# notes ($out/NAME.notes) and disassembly ($out/NAME.s), and checks that it is a $arch code object running
# wavefronts of 64 with no scratch (private segment) and no register spills. Returns 2 if it does not compile, 1
# if a check fails (reasons on stderr).
compile_code_object() {
  name=$1 src=$2
  shift 2
  obj=$out/$name.o
  if ! HIP_PLATFORM=amd "$hipcc" -x hip --offload-arch="$arch" --cuda-device-only --no-gpu-bundle-output -O3 \
      -Wall -Wextra -Werror -I"$kdir" "$@" -c "$kdir/$src" -o "$obj"; then
    echo "FAIL: $name does not compile" >&2
    return 2
  fi
  "$readelf" --notes "$obj" >"$out/$name.notes"
  "$objdump" -d --mcpu="$arch" "$obj" >"$out/$name.s"
  ok=0
  grep -q "amdhsa.target: *amdgcn-amd-amdhsa--$arch" "$out/$name.notes" ||
    { echo "FAIL: $name is not a $arch code object" >&2; ok=1; }
  grep -q "\.wavefront_size: *64" "$out/$name.notes" || { echo "FAIL: $name does not run wavefronts of 64" >&2; ok=1; }
  if grep -E "\.private_segment_fixed_size: *[1-9]|\.(v|s)gpr_spill_count: *[1-9]" "$out/$name.notes" >&2; then
    echo "FAIL: $name uses scratch or spills registers" >&2
    ok=1
  fi
  return $ok
}
