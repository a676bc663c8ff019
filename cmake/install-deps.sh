#!/usr/bin/env bash
# Installs what syncbn needs to build, test and train, on Debian/Ubuntu. As root it runs
# apt-get; otherwise it prints the exact command to run. Used by the README's commands, CI and
# the Docker images, so every place installs the same set.
#   cmake/install-deps.sh                  build + run dependencies
#   cmake/install-deps.sh --with-torch     also PyTorch (CPU) for the comparison benchmarks
#   cmake/install-deps.sh --with-test-tools    also shellcheck, clang-format, docker-compose and
#                                          clang with libFuzzer (the tests lint the scripts,
#                                          check the C++ formatting, validate docker/compose.yml
#                                          and replay the fuzzers' corpora)
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  openmpi-bin libopenmpi-dev
  libboost-program-options-dev
  nlohmann-json3-dev
  libopenblas-dev
  libgtest-dev libbenchmark-dev
  zlib1g-dev
  dataset-fashion-mnist
  gnuplot-nox
  iproute2 util-linux procps
)
for flag in "$@"; do
  case $flag in
    --with-torch) packages+=(python3 python3-torch) ;;
    --with-test-tools) packages+=(shellcheck clang-format docker-compose clang libclang-rt-dev) ;;
    "") ;;
    *) echo "install-deps.sh: unknown flag '$flag'" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi

if [[ $(id -u) -ne 0 ]]; then
  echo "syncbn needs these packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "installing: ${missing[*]}" >&2
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
