set -u
export FLASHPORT_CACHE_DIR=/tmp/fpcache
FA_CHECK_REPEATS=20 ./build-dev/tests/cuda_fwd_check > $OUT/fwd.txt 2>&1; echo "rc $?" >> $OUT/fwd.txt
./build-dev/tests/cuda_fwd_check --decode > $OUT/decode.txt 2>&1; echo "rc $?" >> $OUT/decode.txt
PYTHONPATH=build-dev/pylib:python FLASHPORT_LIBRARY=$PWD/build-dev/libflashport.so timeout 300 python3 -m pytest -q -p no:cacheprovider python/tests/test_torch_cuda.py > $OUT/pytest.txt 2>&1; echo "rc $?" >> $OUT/pytest.txt
tail -2 $OUT/fwd.txt; grep -E "^decode" $OUT/decode.txt; tail -15 $OUT/pytest.txt
