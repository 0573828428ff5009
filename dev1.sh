set -u
export FLASHPORT_CACHE_DIR=/tmp/fpcache
FA_CHECK_REPEATS=50 ./build-dev/tests/cuda_fwd_check > $OUT/fwd.txt 2>&1; echo "rc $?" >> $OUT/fwd.txt
./build-dev/tests/cuda_bwd_check > $OUT/bwd.txt 2>&1; echo "rc $?" >> $OUT/bwd.txt
./build-dev/tests/cuda_f32_check > $OUT/f32.txt 2>&1; echo "rc $?" >> $OUT/f32.txt
./build-dev/tests/cuda_f32_check --bench >> $OUT/f32.txt 2>&1
FLASHPORT_CUDA_ARCH=compute_75 FA_CHECK_REPEATS=5 ./build-dev/tests/cuda_fwd_check > $OUT/fwd75.txt 2>&1; echo "rc $?" >> $OUT/fwd75.txt
timeout 150 ./build-dev/tests/conformance/flashport-conformance --device 1 --quick --max-configs 2 > $OUT/conf.txt 2>&1; echo "rc $?" >> $OUT/conf.txt
FLASHPORT_CUDA_ARCH=compute_75 timeout 120 ./build-dev/tests/conformance/flashport-conformance --device 1 --quick --max-configs 1 > $OUT/conf75.txt 2>&1; echo "rc $?" >> $OUT/conf75.txt
PYTHONPATH=build-dev/pylib:python FLASHPORT_LIBRARY=$PWD/build-dev/libflashport.so timeout 200 python3 -m pytest -q -p no:cacheprovider python/tests/test_torch_cuda.py > $OUT/pytest.txt 2>&1; echo "rc $?" >> $OUT/pytest.txt
for f in fwd bwd f32 fwd75 conf conf75 pytest; do echo "== $f"; grep -E "FAIL|rc |case\(s\)|passed|failed" $OUT/$f.txt | tail -4; done
