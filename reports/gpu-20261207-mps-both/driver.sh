#!/bin/bash
# Session driver (issue 19's 15 minutes, issue 20's per-unit cost), one lease, run detached:
#   1. both papers' smollm2 suites in ONE pytest session, cold cache, -n 8, under CUDA MPS
#      (eight processes share the GPU's SMs at once instead of time-slicing it), from a copy of the tree;
#   2. the cache's build inventory and timeline (bench/cache_inventory.py);
#   3. MPS stopped, then bench/paper_cost.py on the paper profile's random stand-ins, in what time is left.
set -u
P=/opt/torch/.venv/bin/python
rm -rf /tmp/wt && mkdir /tmp/wt && tar --exclude='./.gguf-*' --exclude='./.whl*' --exclude='./.gem-*' --exclude='./.tf' -cf - . | tar -xf - -C /tmp/wt
cd /tmp/wt
export PYTHONPATH=/tmp/site:src:.:bench CLAIMKIT_SMOLLM2_GGUF=/tmp/smol.gguf TQDM_DISABLE=1 PYTHONUNBUFFERED=1
export CLAIMKIT_CACHE=/tmp/cache-both
export CUDA_MPS_PIPE_DIRECTORY=/tmp/mps-pipe CUDA_MPS_LOG_DIRECTORY=/tmp/mps-log
mkdir -p $CUDA_MPS_PIPE_DIRECTORY $CUDA_MPS_LOG_DIRECTORY
nvidia-smi --query-gpu=name,memory.total,compute_mode --format=csv > /tmp/suite.walls
nvidia-cuda-mps-control -d && echo "mps daemon started" >> /tmp/suite.walls || echo "mps daemon FAILED to start" >> /tmp/suite.walls
s=$(date +%s)
timeout ${SUITE_S:-960} $P -m pytest -p claimkit.plugin claims/ -m gpu --claimkit-profile smollm2-135m -n 8 --claimkit-fail-on=never \
   --claimkit-report-dir /tmp/rep-both -p no:cacheprovider -q --durations=60 > /tmp/both.log 2>&1
echo "both rc=$? wall=$(( $(date +%s)-s ))s start=$(date -d @$s +%T)" >> /tmp/suite.walls
echo "mps servers during the run: $(echo get_server_list | nvidia-cuda-mps-control)" >> /tmp/suite.walls
echo quit | nvidia-cuda-mps-control
unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
$P bench/cache_inventory.py /tmp/cache-both --timeline 30 --json /tmp/inventory.json --builds > /tmp/inventory.txt 2>&1
touch /tmp/suite.done
left=${COST_BUDGET_S:-420}
$P bench/paper_cost.py --variants --json /tmp/cost.json --stand-ins /tmp/standins --budget-s $left > /tmp/cost.log 2>&1
echo "paper_cost rc=$? at $(date +%T)" >> /tmp/suite.walls
touch /tmp/cost.done
