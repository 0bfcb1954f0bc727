#!/usr/bin/env bash
# The criteria comparison: the same siblings' mask consistency under three pruning criteria.
# Preset `imprint` with siblings spawned at epochs 0, 1 and 3, one initialization; each
# criterion is its own run (the criterion is part of the run id) from the same seed, so the
# three runs train identical networks and differ only in what ranks their weights.
# Usage (from the repository root): bash docs/criteria_fashion_mnist/run.sh [WORKDIR]
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
workdir="${1:-runs}"
flags=(--preset=imprint --spawn_epochs=0,1,3 --inits=1
       --dataset=/usr/share/datasets/fashion-mnist --workdir="$workdir")
for criterion in magnitude movement snip; do
  python experiments/run.py "${flags[@]}" --criterion="$criterion" --no_progress
  rundir="$(python experiments/run.py "${flags[@]}" --criterion="$criterion" --dry_run |
            sed -n 's/^run directory: \([^ ]*\).*/\1/p')"
  mkdir -p "$out/$criterion"
  cp "$rundir"/{results.json,report.md,*.png} "$out/$criterion/"
done
