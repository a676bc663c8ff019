#!/usr/bin/env bash
# Installs missing dependencies, configures and builds syncbn into ${SYNCBN_BUILD_DIR:-build}.
# Extra arguments go to cmake's configure step (e.g. -DSYNCBN_CUDA=OFF).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${SYNCBN_BUILD_DIR:-$root/build}

# SYNCBN_DEPS_FLAGS: extra flags for install-deps.sh (tests/run.sh adds --with-test-tools).
read -r -a deps_flags <<<"${SYNCBN_DEPS_FLAGS:-}"
"$root/cmake/install-deps.sh" "${deps_flags[@]}"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
cmake --build "$build" -j "$(nproc)"
