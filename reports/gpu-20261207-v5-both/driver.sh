#!/bin/bash
# Session driver: both papers' smollm2 suites in ONE pytest session, cold cache, -n 8 (issue 19's 15 minutes),
# run from a copy of the tree so later device calls cannot change files under it.
set -u
P=/opt/torch/.venv/bin/python
rm -rf /tmp/wt && mkdir /tmp/wt && tar --exclude='./.gguf-*' --exclude='./.whl*' --exclude='./.gem-*' -cf - . | tar -xf - -C /tmp/wt
cd /tmp/wt
export PYTHONPATH=/tmp/site:src:. CLAIMKIT_SMOLLM2_GGUF=/tmp/smol.gguf TQDM_DISABLE=1 PYTHONUNBUFFERED=1
export CLAIMKIT_CACHE=/tmp/cache-both
nvidia-smi --query-gpu=name,memory.total --format=csv > /tmp/suite.walls
s=$(date +%s)
$P -m pytest -p claimkit.plugin claims/ -m gpu --claimkit-profile smollm2-135m -n 8 --claimkit-fail-on=never \
   --claimkit-report-dir /tmp/rep-both -p no:cacheprovider -q --durations=60 > /tmp/both.log 2>&1
echo "both rc=$? wall=$(( $(date +%s)-s ))s start=$(date -d @$s +%T)" >> /tmp/suite.walls
touch /tmp/suite.done
