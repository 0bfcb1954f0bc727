#!/usr/bin/env bash
# The quick preset on a second family: VGG-16 at width 8 (`--model=cifar_vgg_16_8`: stages of
# 8, 16, 32, 64, 64 channels) in place of the preset's ResNet-8 width 8, everything else the
# preset's, on the same 4,000 Fashion-MNIST images as docs/quick_fashion_mnist.
# Usage (from the repository root): bash docs/quick_vgg_fashion_mnist/run.sh [WORKDIR]
set -euo pipefail
out="$(cd "$(dirname "$0")" && pwd)"
workdir="${1:-runs}"
flags=(--preset=quick --model=cifar_vgg_16_8 --dataset=/usr/share/datasets/fashion-mnist
       --workdir="$workdir")
python experiments/run.py "${flags[@]}" --no_progress
rundir="$workdir/$(python -c "from jaxlottery import config; print(config.preset('quick', model='cifar_vgg_16_8', dataset='/usr/share/datasets/fashion-mnist').run_id())")"
cp "$rundir"/{results.json,report.md,config.json} "$rundir"/*.png "$rundir"/*.csv "$out/"
