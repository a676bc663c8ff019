#!/usr/bin/env bash
# The main job: a 4-rank SyncBatchNorm training on Fashion-MNIST (Debian's
# dataset-fashion-mnist), launched through syncbn-run (mpirun; oversubscribed where cores are
# fewer than ranks). Defaults come from launch/main.cfg; flags given here win over it, e.g.
#   launch/train.sh --epochs 5 --model resnet        SYNCBN_NP=8 launch/train.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SYNCBN_BUILD_DIR=${SYNCBN_BUILD_DIR:-$root/build}

"$root/cmake/build.sh"
exec "$root/launch/syncbn-run" -np "${SYNCBN_NP:-4}" -- "$SYNCBN_BUILD_DIR/syncbn-train" \
  --config "$root/launch/main.cfg" "$@"
