#!/bin/bash
# session-local driver (not committed): both papers' smollm2 suites, each cold in its own cache, timed apart
set -u
P=/opt/torch/.venv/bin/python
export PYTHONPATH=/tmp/site:src:. CLAIMKIT_SMOLLM2_GGUF=/tmp/smol.gguf TQDM_DISABLE=1 PYTHONUNBUFFERED=1
run() { name=$1; shift; export CLAIMKIT_CACHE=/tmp/cache-$name; s=$(date +%s)
  $P -m pytest -p claimkit.plugin "$@" -m gpu --claimkit-profile smollm2-135m --claimkit-fail-on=never \
     --claimkit-report-dir /tmp/rep-$name -p no:cacheprovider -q --durations=40 > /tmp/$name.log 2>&1
  echo "$name rc=$? wall=$(( $(date +%s)-s ))s start=$(date -d @$s +%T)" >> /tmp/suite.walls; }
nvidia-smi --query-gpu=name,memory.total --format=csv > /tmp/suite.walls
run wf claims/ --ignore=claims/emergent_misalignment -n 6
run em claims/emergent_misalignment -n 6
touch /tmp/suite.done
