#!/usr/bin/env bash
# Runs the libFuzzer harnesses one after another (one process each, -fork=0) and reports, per
# target, the executions, their rate and the crashes. Exits 1 if any target crashed, timed out
# or ran out of memory.
#   tests/fuzz/run.sh TARGET|all DURATION [libFuzzer flags...]
# TARGET is idx, safetensors or config; DURATION is minutes ("10") or seconds ("5s").
# Builds first (tests/fuzz/build.sh). The corpus grows in $SYNCBN_FUZZ_WORK_DIR/corpus/TARGET
# (default build-fuzz/work), seeded from tests/fuzz/corpus/TARGET, which is never written;
# reproducers land in $SYNCBN_FUZZ_WORK_DIR/artifacts/TARGET.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=${SYNCBN_FUZZ_BUILD_DIR:-$root/build-fuzz}
work=${SYNCBN_FUZZ_WORK_DIR:-$build/work}

usage() { echo "usage: tests/fuzz/run.sh idx|safetensors|config|all MINUTES|SECONDSs [libFuzzer flags...]" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
target=$1 duration=$2
shift 2
case $target in
  all) targets=(idx safetensors config) ;;
  idx | safetensors | config) targets=("$target") ;;
  *) usage ;;
esac
if [[ $duration =~ ^[0-9]+s$ ]]; then
  seconds=${duration%s}
elif [[ $duration =~ ^[0-9]+$ ]]; then
  seconds=$((duration * 60))
else
  usage
fi

# Inputs a little beyond the largest a target's format needs to show its bugs: an IDX header
# of up to 255 dimensions is 1024 bytes, a safetensors header with a few tensors and the
# longest config are well under 2 KiB.
max_len() {
  case $1 in
    idx | safetensors) echo 4096 ;;
    config) echo 2048 ;;
  esac
}

"$root/tests/fuzz/build.sh" >/dev/null

failed=0
for t in "${targets[@]}"; do
  corpus=$work/corpus/$t artifacts=$work/artifacts/$t log=$work/$t.log
  mkdir -p "$corpus" "$artifacts"
  # A reader that needs more than 10 s or 2 GiB for an input of a few KiB has a bug too.
  command=("$build/${t}_fuzz" -fork=0 -max_total_time="$seconds" -max_len="$(max_len "$t")"
           -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/"
           "$@" "$corpus" "$root/tests/fuzz/corpus/$t")
  echo "== $t: ${command[*]}"
  start=$SECONDS
  status=0
  "${command[@]}" >"$log" 2>&1 || status=$?
  elapsed=$((SECONDS - start))
  executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  crashes=$(find "$artifacts" -type f | wc -l)
  echo "$t: ${executions:-?} executions in ${elapsed} s (${rate:-?}/s), $crashes crashes" \
       "(reproducers in $artifacts), corpus $(find "$corpus" -type f | wc -l) files, exit $status"
  if [[ $status -ne 0 || $crashes -ne 0 ]]; then
    failed=1
    grep -E -A30 'ERROR: |runtime error|==ERROR|deadly signal|uncaught exception|terminate called' "$log" | head -60 || tail -40 "$log"
  fi
done
exit "$failed"
