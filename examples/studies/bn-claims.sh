#!/usr/bin/env bash
# Runs the batch-norm claim studies (examples/studies/bn-claims-*.cfg) and their reports, the
# measurements behind docs/studies/bn-claims.md:
#   examples/studies/bn-claims.sh [OUT_DIR] [STUDY ...]
# OUT_DIR defaults to docs/studies/bn-claims; STUDY is lr, lr-momentum, init, placement, dropout,
# batch (all by default). JOBS studies run at once (default: the number of cores, at most 2: each
# cell is one single-threaded rank). A study resumes: cells already recorded in OUT_DIR/STUDY are
# skipped. About 105 minutes of one core in all (lr and lr-momentum about 27 each), about an hour
# on 2 cores. Exits non-zero if any study or report fails.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
study=${SYNCBN_STUDY:-$root/build/syncbn-study}
out=${1:-$root/docs/studies/bn-claims}
shift $(($# > 0 ? 1 : 0))
names=("$@")
((${#names[@]} > 0)) || names=(lr lr-momentum init placement dropout batch)
jobs=${JOBS:-$(($(nproc) < 2 ? 1 : 2))}

[[ -x $study ]] || { echo "bn-claims: $study not found: build first (cmake --build build)" >&2; exit 2; }
for name in "${names[@]}"; do
  [[ -f $root/examples/studies/bn-claims-$name.cfg ]] ||
    { echo "bn-claims: no study '$name' (lr, lr-momentum, init, placement, dropout, batch)" >&2; exit 2; }
done
mkdir -p "$out"

# The report is written even when some cells failed (it lists them); either failure is the
# study's status.
run_one() {
  local name=$1 status=0
  "$study" run "$root/examples/studies/bn-claims-$name.cfg" --out "$out/$name" \
    >"$out/$name.log" 2>&1 || status=$?
  "$study" report "$out/$name" >>"$out/$name.log" 2>&1 || status=$?
  return "$status"
}

declare -A pid_of=()
failed=0
for name in "${names[@]}"; do
  while (($(jobs -rp | wc -l) >= jobs)); do wait -n || true; done
  echo "bn-claims: $name -> $out/$name (log: $out/$name.log)"
  run_one "$name" &
  pid_of[$name]=$!
done
for name in "${names[@]}"; do
  if wait "${pid_of[$name]}"; then
    echo "bn-claims: $name done: $out/$name/report.md"
  else
    echo "bn-claims: $name FAILED (see $out/$name.log)" >&2
    failed=1
  fi
done
exit "$failed"
