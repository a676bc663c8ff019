#!/usr/bin/env bash
# The batch-per-rank study (examples/studies/batch-per-rank.cfg) and its report, into OUT
# (default studies/batch-per-rank); further arguments go to `syncbn-study run` (--ranks 4, ...).
#   examples/scaling_study.sh [OUT] [RUN-OPTIONS...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SYNCBN_BUILD_DIR:-$root/build}
out=${1:-studies/batch-per-rank}
[[ -x $build/syncbn-study ]] || "$root/cmake/build.sh"
"$build/syncbn-study" run "$root/examples/studies/batch-per-rank.cfg" --out "$out" "${@:2}" || status=$?
"$build/syncbn-study" report "$out"
exit "${status:-0}"
