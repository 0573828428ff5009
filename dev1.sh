set -u
export FLASHPORT_CACHE_DIR=/tmp/fpcache
./build-dev/bench/flashport-bench --device 1 --pass fwdbwd --hdim 64,128 --seqlen 2k,4k,8k,16k > $OUT/fb.txt 2>&1
python3 bench/torch_cuda_fwd.py --bwd > $OUT/torch_fb.txt 2>&1
S="--section SpeedOfLight --section Occupancy --section LaunchStats --section ComputeWorkloadAnalysis --section InstructionStats --section WarpStateStats"
ncu -k regex:dkdv --launch-skip 2 --launch-count 1 $S ./build-dev/bench/flashport-bench --device 1 --pass fwdbwd --hdim 128 --seqlen 4k --causal off --repeats 2 --warmup 1 > $OUT/ncu_bwd.txt 2>&1
cat > /tmp/t.py <<'PY'
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
q,k,v=(torch.randn(4,16,4096,128,device="cuda",dtype=torch.bfloat16,requires_grad=True) for _ in range(3))
with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
    for _ in range(3): torch.nn.functional.scaled_dot_product_attention(q,k,v).sum().backward()
torch.cuda.synchronize()
PY
ncu -k regex:bwd --launch-skip 2 --launch-count 2 $S python3 /tmp/t.py > $OUT/ncu_fa2bwd.txt 2>&1
grep -E "^fwd" $OUT/fb.txt; grep "d64\|d128" $OUT/torch_fb.txt
