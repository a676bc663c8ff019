#!/usr/bin/env bash
# The communication watchdog ends a job whose collective is stuck, at -np 2: the watchdog thread
# of rank 0 aborts while the main threads of both ranks sit inside MPI calls. The job must end
# within seconds (not at ctest's timeout), with a non-zero status and "rank 0: MPI allreduce ...
# did not complete within 1 s" on stderr. Needs SYNCBN_BUILD_DIR (set by ctest).
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
program=$build/tests/mpi_watchdog_abort
[[ -x $program ]] || { echo "FAIL: $program is missing"; exit 1; }
# shellcheck source=tests/e2e/mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpirun.sh"
log=$(mktemp)
trap 'rm -f "$log"' EXIT

start=$SECONDS
timeout 60 "${mpirun_cmd[@]}" -np 2 "$program" >"$log" 2>&1
status=$?
elapsed=$((SECONDS - start))
cat "$log"
failed=0
if [[ $status -eq 0 || $status -eq 124 ]]; then
  echo "FAIL: the job exited with $status (0: it was not aborted; 124: it hung until timeout 60)"
  failed=1
fi
if ! grep -q "rank 0: MPI allreduce of 8 float32 elements .* did not complete within 1 s" "$log"; then
  echo "FAIL: no 'rank 0: MPI allreduce ... did not complete within 1 s' message"
  failed=1
fi
echo "job ended after ${elapsed} s with status $status"
if [[ $failed -eq 0 ]]; then echo "1 passed, 0 failed"; else echo "0 passed, 1 failed"; fi
exit "$failed"
