set -u
export FLASHPORT_CACHE_DIR=/tmp/fpcache
timeout 150 ./build-dev/tests/cuda_fwd_check --decode-tiles > $OUT/dtiles.txt 2>&1; echo "rc $?" >> $OUT/dtiles.txt
FA_CHECK_REPEATS=0 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 ./build-dev/tests/cuda_fwd_check > $OUT/memcheck_fwd.txt 2>&1; echo "rc $?" >> $OUT/memcheck_fwd.txt
FA_CHECK_REPEATS=0 timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 ./build-dev/tests/cuda_bwd_check > $OUT/memcheck_bwd.txt 2>&1; echo "rc $?" >> $OUT/memcheck_bwd.txt
timeout 150 ./build-dev/tests/conformance/flashport-conformance --device 1 --quick --max-configs 2 > $OUT/conf.txt 2>&1; echo "rc $?" >> $OUT/conf.txt
for f in memcheck_fwd memcheck_bwd conf dtiles; do echo "== $f"; tail -4 $OUT/$f.txt; done
