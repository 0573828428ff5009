#!/bin/sh
# The README's two commands. On a fresh Debian 12 machine as root it installs what is missing, builds,
# and then either runs the demo on the best device found or runs every test suite (the release build's
# suites, then the host-side suites again under AddressSanitizer and UndefinedBehaviorSanitizer).
#
#   sh tests/run.sh demo
#   sh tests/run.sh test
set -eu
mode=${1:-test}
case $mode in demo|test) ;; *) echo "usage: sh tests/run.sh demo|test" >&2; exit 2 ;; esac
cd "$(dirname "$0")/.."

need=""
# ocl-icd-opencl-dev + pocl-opencl-icd: the OpenCL backend's loader and headers, and PoCL, the CPU OpenCL device
# the conformance suite runs it on where no GPU is. hipcc + libamdhip64-dev: Debian's ROCm 5.2 (clang 15), with
# which the tests compile the HIP kernels for gfx90a and gfx940 (no AMD GPU needed; tests/hip).
for pkg in gcc make cmake libcmocka-dev pkg-config libc6-dev python3-venv python3-pip python3-numpy python3-pytest \
  python3-wheel python3-setuptools ocl-icd-opencl-dev pocl-opencl-icd hipcc libamdhip64-dev; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need="$need $pkg"
done
if [ -n "$need" ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages:$need (run as root, or: sudo apt-get install$need)" >&2
    exit 1
  fi
  echo "installing:$need"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $need >/dev/null
fi

jobs=$(nproc)
start=$(date +%s)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j"$jobs"
echo "release build: $(( $(date +%s) - start )) s"

if [ "$mode" = demo ]; then
  exec ./build/flashport-demo
fi

(cd build && ctest --output-on-failure -j"$jobs")

# Host-side suites under ASan + UBSan; the conformance suite in its quick mode (no >0.3 GFLOP references).
cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFLASHPORT_SANITIZE=ON >/dev/null
cmake --build build-sanitize -j"$jobs"
(cd build-sanitize && FLASHPORT_CONFORMANCE_QUICK=1 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  LSAN_OPTIONS="suppressions=$PWD/../tests/lsan.supp" \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 ctest --output-on-failure -j"$jobs")

# The Python package (python/): installed into a venv, its tests run against this build's library. torch is
# optional and not installed here (its tests skip); the numpy tests cover forward, backward and KV cache.
# numpy and pytest come from Debian (seen by the venv), so the test command needs no package index. The
# interpreter is Debian's own by full path: a python3 earlier on PATH (pyenv, conda) does not see Debian's
# packages, and its venv would lack numpy, pytest and wheel.
/usr/bin/python3 -m venv --system-site-packages build/venv
build/venv/bin/python -m pip install -q --no-index --no-build-isolation --force-reinstall --no-deps ./python
FLASHPORT_LIBRARY="$PWD/build/libflashport.so" build/venv/bin/python -m pytest -q -rs -p no:cacheprovider python/tests
echo "all suites passed"
