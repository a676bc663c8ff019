#!/usr/bin/env bash
# Runs every test: installs missing dependencies, builds, then ctest (unit tests, MPI tests
# under mpirun -np 1..4, launcher and multi-host tests; GPU tests skip without a device).
# Extra arguments go to ctest (e.g. -R SyncBatchNorm).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export SYNCBN_BUILD_DIR=${SYNCBN_BUILD_DIR:-$root/build}

SYNCBN_DEPS_FLAGS="${SYNCBN_DEPS_FLAGS:-} --with-test-tools" "$root/cmake/build.sh"
cd "$SYNCBN_BUILD_DIR"
# MPI tests reserve one processor per rank (ctest PROCESSORS), so -j stays within the cores.
ctest --output-on-failure -j "$(nproc)" "$@"
