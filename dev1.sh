set -u
export FLASHPORT_CACHE_DIR=/tmp/fpcache
./build-dev/tests/cuda_fwd_check --decode > $OUT/decode.txt 2>&1; echo "rc $?" >> $OUT/decode.txt
python3 bench/torch_cuda_decode.py > $OUT/torch_decode.txt 2>&1
cat $OUT/decode.txt $OUT/torch_decode.txt
