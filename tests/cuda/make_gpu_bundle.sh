#!/usr/bin/env bash
# Packs what the GPU checks need onto a lent GPU machine that has CUDA, cuDNN, NCCL and PyTorch
# but no Open MPI, Boost or OpenBLAS and no package mirror (the workplace's H100/H200 machines):
#   .gpu-bundle/runtime.tar.xz   Open MPI (relocatable through OPAL_PREFIX) and the shared
#                                libraries the programs need beside CUDA's
#   .gpu-bundle/bin.tar.xz       the GPU tests and programs, built here for one architecture
#   .gpu-bundle/run.sh           tests/cuda/gpu_bundle_run.sh
# then, with the device tool: run `bash .gpu-bundle/run.sh` carrying .gpu-bundle (under 16 MB).
#   tests/cuda/make_gpu_bundle.sh [CUDA architecture, default 90 (H100/H200)]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
arch=${1:-90}
build=${SYNCBN_BUNDLE_BUILD_DIR:-$root/build-gpu-bundle}
out=$root/.gpu-bundle
targets=(syncbn_cuda_tests syncbn-train syncbn-bench-batch-norm syncbn-bench-nccl
         syncbn-compare-safetensors mpi_sync_batch_norm_cuda_test mpi_nccl_cuda_test)
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES="$arch" >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$stage/scripts" "$stage/lib" "$stage/ompi/usr/bin" \
         "$stage/ompi/usr/lib/x86_64-linux-gnu" "$stage/ompi/usr/share"
for t in "${targets[@]}"; do
  found=$(find "$build" -maxdepth 2 -type f -name "$t" | head -1)
  [[ -n $found ]] || { echo "make_gpu_bundle.sh: $t was not built" >&2; exit 1; }
  cp "$found" "$stage/bin/"
done
strip "$stage"/bin/*
cp "$root"/tests/e2e/cuda_training_test.sh "$stage/scripts/"

# Open MPI as Debian lays it out, relocated under ompi/usr (OPAL_PREFIX on the device).
lib=/usr/lib/x86_64-linux-gnu
cp /usr/bin/orterun /usr/bin/orted "$stage/ompi/usr/bin/"
ln -s orterun "$stage/ompi/usr/bin/mpirun"
cp -a "$lib/openmpi" "$lib/pmix2" "$stage/ompi/usr/lib/x86_64-linux-gnu/"
rm -rf "$stage/ompi/usr/lib/x86_64-linux-gnu/openmpi/include"
cp -a /usr/share/openmpi "$stage/ompi/usr/share/"
# Every shared library the programs and Open MPI's components load, except the C/C++ runtime
# and CUDA's own (the device has newer ones).
mapfile -t libs < <(find "$stage/bin" "$stage/ompi" -type f \( -perm -u+x -o -name "*.so*" \) \
  -exec ldd {} \; 2>/dev/null | awk '/=> \//{print $3}' | sort -u |
  grep -vE '/(libc|libm|libstdc\+\+|libgcc_s|libdl|libpthread|librt)\.so|ld-linux|cuda|cudnn|cublas|nccl')
cp -L "${libs[@]}" "$stage/lib/"

mkdir -p "$out"
tar -C "$stage" -cf - ompi lib | xz -T0 -6 >"$out/runtime.tar.xz"
tar -C "$stage" -cf - bin scripts | xz -T0 -6 >"$out/bin.tar.xz"
cp "$root/tests/cuda/gpu_bundle_run.sh" "$out/run.sh"
du -sh "$out"/*
echo "next: the device tool's run with command 'bash .gpu-bundle/run.sh' and carry ['.gpu-bundle']"
