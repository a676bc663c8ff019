#!/usr/bin/env bash
# Every shell script of the project is shellcheck-clean at severity warning.
set -uo pipefail
root=${SYNCBN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
command -v shellcheck >/dev/null || { echo "skip: shellcheck not installed (cmake/install-deps.sh --with-test-tools)"; exit 77; }
mapfile -t scripts < <(cd "$root" && { ls launch/syncbn-run .ci/run; find cmake launch docker tests examples -name '*.sh' -o -name '*.sbatch'; } | sort -u)
cd "$root" || exit 1
if shellcheck -S warning "${scripts[@]}"; then
  echo "${#scripts[@]} passed, 0 failed"
else
  echo "0 passed, 1 failed"
  exit 1
fi
