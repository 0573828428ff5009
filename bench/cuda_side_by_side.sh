#!/bin/sh
# flashport against torch (FA2 and cuDNN) on one CUDA GPU, one invocation: forward and forward+backward over the
# bench grid (bf16, 16k tokens, hidden 2048) and the decode grid, then one ratio table (bench/cuda_ratio_table.py).
#   bench/cuda_side_by_side.sh BUILD_DIR OUT_DIR      (a device call: sh bench/cuda_side_by_side.sh build-dev $OUT)
set -e
B=${1:-build}
O=${2:-.}
mkdir -p "$O"
"$B/bench/flashport-bench" --hdim 64,128,256 --seqlen 2k,4k,8k,16k --causal both --pass fwd > "$O/bench_fwd.txt" 2>&1
python3 bench/torch_cuda_fwd.py > "$O/torch_fwd.txt" 2>&1
"$B/bench/flashport-bench" --hdim 64,128 --seqlen 2k,4k,8k,16k --causal both --pass fwdbwd > "$O/bench_bwd.txt" 2>&1
python3 bench/torch_cuda_fwd.py --bwd > "$O/torch_bwd.txt" 2>&1
"$B/tests/cuda_fwd_check" --decode > "$O/decode.txt" 2>&1
python3 bench/torch_cuda_decode.py >> "$O/decode.txt" 2>&1
python3 bench/cuda_ratio_table.py "$O"
