#!/usr/bin/env bash
# A stopped rank ends the job with a message (issue "Long jobs that survive", item 4a): a rank
# of a 2-rank syncbn-train is stopped with SIGSTOP (as a wedged node or a debugger would leave
# it) after training has started; with SYNCBN_COMM_TIMEOUT=3 the other rank's MPI watchdog must
# end the job within ~20 s, non-zero, with "rank 0: MPI allreduce ... did not complete within
# 3 s at training step N". Synthetic data: needs only SYNCBN_BUILD_DIR (set by ctest).
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
train=$build/syncbn-train
[[ -x $train ]] || { echo "skip: no $train"; exit 77; }
command -v mpirun >/dev/null || { echo "skip: no mpirun"; exit 77; }

# shellcheck source=tests/e2e/mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpirun.sh"
tmp=$(mktemp -d)
# The metrics path is unique to this run: it finds the ranks' processes (pgrep -f).
marker=$tmp/stopped-rank-metrics.jsonl
job=
cleanup() {
  # Leftovers of a failed run: wake stopped ranks so that they can die, then end them.
  for pid in $(pgrep -f "$marker"); do kill -CONT "$pid" 2>/dev/null; kill -KILL "$pid" 2>/dev/null; done
  [[ -n $job ]] && kill -KILL "$job" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

SYNCBN_COMM_TIMEOUT=3 OMP_NUM_THREADS=1 timeout 120 "${mpirun_cmd[@]}" -np 2 "$train" \
  --dataset synthetic --model mlp --norm syncbn --steps 100000000 --epochs 1000000 --threads 1 \
  --no-progress --metrics "$marker" >"$tmp/job.log" 2>&1 &
job=$!

# Training has started once rank 0 has printed its banner and the ranks have run a few steps.
rank1=
for _ in $(seq 1 300); do
  if grep -q "^syncbn-train:" "$tmp/job.log"; then
    for pid in $(pgrep -f "$marker"); do
      [[ $(cat "/proc/$pid/comm" 2>/dev/null) == syncbn-train ]] || continue
      tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=1" && rank1=$pid
    done
  fi
  [[ -n $rank1 ]] && break
  sleep 0.1
done
[[ -n $rank1 ]]
check "the 2-rank job starts training (rank 1 is pid ${rank1:-none})" $?
[[ -n $rank1 ]] || { cat "$tmp/job.log"; echo "$passed passed, $failed failed"; exit 1; }
sleep 1

start=$(date +%s.%N)
kill -STOP "$rank1"
wait "$job"
code=$?
job=
seconds=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
[[ $code -ne 0 && $code -ne 124 ]]
check "the job ends non-zero after rank 1 is stopped (exit $code after $seconds s)" $?
awk -v s="$seconds" 'BEGIN { exit !(s < 20) }'
check "within 20 s ($seconds s)" $?
grep -qE "^rank 0: MPI [a-z]+ .*did not complete within 3 s at training step [0-9]+" "$tmp/job.log"
check "rank 0 names the stuck MPI collective, the timeout and the step" $?
grep -m1 "did not complete" "$tmp/job.log"

finish
