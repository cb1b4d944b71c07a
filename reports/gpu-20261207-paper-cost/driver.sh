#!/bin/bash
# Session driver (issue 20), one lease, run detached from a copy of the tree:
#   1. bench/paper_cost.py --variants: the paper profile's units of work on random stand-ins of its models
#      (writing the ~17 GB of stand-ins counts against its budget);
#   2. bench/paper_projection.py on those figures;
#   3. the paper profile inside the suite: Table 1's tests on the same stand-ins, cut off after 300 s, to see
#      the in-suite loading, a 3B fine-tune's progress and anything that breaks (random weights: no verdict means anything).
set -u
P=/opt/torch/.venv/bin/python
rm -rf /tmp/wt && mkdir /tmp/wt && tar --exclude='./.gguf-*' --exclude='./.whl*' --exclude='./.gem-*' --exclude='./.tf' -cf - . | tar -xf - -C /tmp/wt
cd /tmp/wt
export PYTHONPATH=/tmp/site:src:. PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total --format=csv > /tmp/walls.txt
s=$(date +%s)
$P bench/paper_cost.py --variants --json /tmp/cost.json --stand-ins /tmp/standins --budget-s ${COST_BUDGET_S:-420} > /tmp/cost.log 2>&1
echo "paper_cost rc=$? wall=$(( $(date +%s)-s ))s" >> /tmp/walls.txt
$P bench/paper_projection.py /tmp/cost.json --json /tmp/projection.json > /tmp/projection.txt 2>&1
touch /tmp/cost.done
export CLAIMKIT_PAPER_BEHAVIOUR_MODEL=/tmp/standins/Llama-3.2-3B-RANDOM
export CLAIMKIT_PAPER_MECHANISM_MODEL=/tmp/standins/gemma-2-2b-RANDOM
export CLAIMKIT_PAPER_SAE=/tmp/standins/gemma-scope-2b-pt-res-RANDOM/layer_20/width_16k/average_l0_71
export CLAIMKIT_CACHE=/tmp/cache-paper
s=$(date +%s)
timeout ${SUITE_S:-300} $P -m pytest -p claimkit.plugin claims/warning_framed/test_table1.py -m gpu --claimkit-profile paper \
   --claimkit-fail-on=never --claimkit-report-dir /tmp/rep-paper -p no:cacheprovider -q -s > /tmp/paper-suite.log 2>&1
echo "paper suite (Table 1) rc=$? wall=$(( $(date +%s)-s ))s (cut at ${SUITE_S:-300} s)" >> /tmp/walls.txt
touch /tmp/suite.done
