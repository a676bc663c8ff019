#!/usr/bin/env bash
# The steps that docker/Dockerfile.cpu and docker/Dockerfile.cuda share, run inside their builds.
# One script for both, so the CPU image (which tests/docker builds and runs) takes every step the
# CUDA image takes; only the base images and the cmake flags differ.
#
#   image.sh build SOURCE_DIR CMAKE_ARGS...
#       in the build stage: configure SOURCE_DIR without tests, check that the backend asked for
#       (-DSYNCBN_CUDA=ON|OFF) is the one configured, build only the programs, install them into
#       /opt/syncbn/bin, and list in
#       /opt/syncbn/runtime-packages the packages that own the shared libraries they load.
#   image.sh runtime PACKAGES_FILE
#       in the runtime stage: install those packages and what a cluster node runs besides
#       (mpirun and orted, sshd and ssh, the Fashion-MNIST files), set up Open MPI for
#       containers, and drop apt's lists and the ssh host keys (each node makes its own).
set -euo pipefail

prefix=/opt/syncbn
# The programs of a cluster node: training, the checkpoint comparison of the tests, and the
# communication benchmark (what a multi-node cluster on one machine is for). No tests, no examples.
programs=(syncbn-train syncbn-compare-safetensors syncbn-bench-comm)
# Not libraries, so ldd cannot find them: mpirun/orted (started over ssh), sshd and ssh, and the
# dataset syncbn-train reads by default.
node_packages=(openmpi-bin openssh-server openssh-client dataset-fashion-mnist)

die() {
  echo "image.sh: $*" >&2
  exit 1
}

# owner_of LIBRARY: the package that owns LIBRARY, as ldd resolved it. ldd prints /lib/... or
# /usr/lib/... and the file may be reached through a symlink (alternatives: libblas.so.3 ->
# openblas-pthread/libblas.so.3), while dpkg knows each file under the one path its package
# shipped, so the path, its target, and both with and without the merged-/usr prefix are tried.
owner_of() {
  local path candidate owner
  for path in "$1" "$(readlink -f "$1")"; do
    for candidate in "$path" "${path#/usr}" "/usr$path"; do
      owner=$(dpkg-query -S "$candidate" 2>/dev/null | grep -v '^diversion by' | head -n 1) || true
      if [[ -n "$owner" ]]; then
        owner=${owner%%: *}
        printf '%s\n' "${owner%%:*}"
        return 0
      fi
    done
  done
  return 1
}

# runtime_packages PROGRAM...: one package per line, sorted, for every shared library the
# programs load. The GPU driver's libraries (libcuda, libnvidia-*) are absent at build time and
# mounted into the container at run time by the NVIDIA Container Toolkit: they are left out.
runtime_packages() {
  local line library
  ldd "$@" | while IFS= read -r line; do
    if [[ "$line" =~ ^[[:space:]]*([^[:space:]]+)\ =\>\ not\ found ]]; then
      library=${BASH_REMATCH[1]}
      [[ "$library" == libcuda.so* || "$library" == libnvidia-* ]] && continue
      die "$library: not found (ldd $*)"
    elif [[ "$line" =~ =\>\ (/[^[:space:]]+) ]]; then
      library=${BASH_REMATCH[1]}
      owner_of "$library" || die "no package owns $library"
    fi
  done | sort -u
}

build() {
  local source_dir=$1 build_dir=/tmp/syncbn-build want=OFF arg program
  shift
  for arg in "$@"; do
    [[ "$arg" == -DSYNCBN_CUDA=ON ]] && want=ON
  done
  cmake -S "$source_dir" -B "$build_dir" -DCMAKE_BUILD_TYPE=Release -DSYNCBN_TESTS=OFF "$@" |
    tee "$build_dir.configure.log"
  # A CUDA image without the CUDA backend would build and run, slowly, on the CPU: fail instead.
  grep -q "syncbn: CUDA backend $want" "$build_dir.configure.log" ||
    die "asked for the CUDA backend $want, configured: $(grep 'syncbn: CUDA backend' "$build_dir.configure.log")"
  cmake --build "$build_dir" -j "$(nproc)" --target "${programs[@]}"

  mkdir -p "$prefix/bin"
  for program in "${programs[@]}"; do
    install -m 755 -s "$build_dir/$program" "$prefix/bin/$program"
  done
  runtime_packages "$prefix"/bin/* >"$prefix/runtime-packages"
  echo "image.sh: runtime packages: $(tr '\n' ' ' <"$prefix/runtime-packages")" >&2
  rm -rf "$build_dir" "$build_dir.configure.log"
}

runtime() {
  local packages=()
  mapfile -t packages <"$1"
  ((${#packages[@]} > 0)) || die "$1: no packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" "${node_packages[@]}" >/dev/null
  apt-get clean
  rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*
  # Containers share no memory namespace for CMA: vader falls back to copies (compose sets it too).
  echo "btl_vader_single_copy_mechanism = none" >>/etc/openmpi/openmpi-mca-params.conf
}

case "${1:-}" in
  build) (($# >= 2)) || die "usage: image.sh build SOURCE_DIR CMAKE_ARGS..."; shift; build "$@" ;;
  runtime) (($# == 2)) || die "usage: image.sh runtime PACKAGES_FILE"; runtime "$2" ;;
  *) die "usage: image.sh build SOURCE_DIR CMAKE_ARGS... | image.sh runtime PACKAGES_FILE" ;;
esac
