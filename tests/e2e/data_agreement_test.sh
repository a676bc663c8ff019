#!/usr/bin/env bash
# Ranks agree on the data before training (issue "Long jobs that survive", item 4b): each rank
# of a 2-rank syncbn-train reads its own --data-dir, a small Fashion-MNIST-format IDX set made
# here. A truncated copy (fewer training samples: the rank would run out of batches first and
# hang the job) and an altered copy of the same size must fail at start, within seconds, naming
# the difference; identical copies in different directories train. Needs SYNCBN_BUILD_DIR (set
# by ctest) and python3.
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
train=$build/syncbn-train
[[ -x $train ]] || { echo "skip: no $train"; exit 77; }
command -v mpirun >/dev/null || { echo "skip: no mpirun"; exit 77; }
command -v python3 >/dev/null || { echo "skip: no python3"; exit 77; }

# shellcheck source=tests/e2e/mpirun.sh
source "$(dirname "${BASH_SOURCE[0]}")/mpirun.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

# make_set DIR TRAIN-SAMPLES ALTER: gzip IDX files (magic 0x00000803 / 0x00000801, big-endian
# sizes, then bytes) of 8x8 images from a fixed generator; ALTER=1 changes one pixel of the
# last training image.
make_set() {
  mkdir -p "$1"
  python3 - "$1" "$2" "$3" <<'PY'
import gzip, random, struct, sys
out, n_train, alter = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
rng = random.Random(7)
train = [(bytes(rng.randrange(256) for _ in range(64)), rng.randrange(10)) for _ in range(200)]
test = [(bytes(rng.randrange(256) for _ in range(64)), rng.randrange(10)) for _ in range(50)]
train = train[:n_train]
if alter:
    image, label = train[-1]
    train[-1] = (bytes([(image[0] + 1) % 256]) + image[1:], label)
def write(prefix, samples):
    with gzip.open(f"{out}/{prefix}-images-idx3-ubyte.gz", "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(samples), 8, 8))
        f.write(b"".join(image for image, _ in samples))
    with gzip.open(f"{out}/{prefix}-labels-idx1-ubyte.gz", "wb") as f:
        f.write(struct.pack(">II", 0x801, len(samples)))
        f.write(bytes(label for _, label in samples))
write("train", train)
write("t10k", test)
PY
}
make_set "$tmp/full" 200 0
make_set "$tmp/copy" 200 0
make_set "$tmp/truncated" 190 0
make_set "$tmp/altered" 200 1

common=(--model mlp --steps 2 --batch-size 8 --seed 3 --threads 1 --no-progress)
run_pair() {  # run_pair LOG DIR-OF-RANK-0 DIR-OF-RANK-1
  OMP_NUM_THREADS=1 timeout 60 "${mpirun_cmd[@]}" -np 1 "$train" "${common[@]}" --data-dir "$2" : \
    -np 1 "$train" "${common[@]}" --data-dir "$3" >"$1" 2>&1
}

run_pair "$tmp/same.log" "$tmp/full" "$tmp/copy"
check "identical copies of the data train" $?

start=$(date +%s)
run_pair "$tmp/truncated.log" "$tmp/full" "$tmp/truncated"
code=$?
[[ $code -ne 0 && $code -ne 124 ]] && grep -qF "training data differs across ranks: the training set has 200 samples on rank 0 but 190 on rank 1" "$tmp/truncated.log"
status=$?  # before the $(date) below, which resets $?
check "a truncated copy on rank 1 fails at start naming the sizes ($(( $(date +%s) - start )) s)" $status
grep -m1 "differs" "$tmp/truncated.log"

start=$(date +%s)
run_pair "$tmp/altered.log" "$tmp/full" "$tmp/altered"
code=$?
[[ $code -ne 0 && $code -ne 124 ]] && grep -qE "training data differs across ranks: the training set has the same size \(200 samples\) on every rank but different content: fingerprint 0x[0-9a-f]{16} on rank 0 but 0x[0-9a-f]{16} on rank 1" "$tmp/altered.log"
status=$?
check "an altered copy of the same size on rank 1 fails at start naming the content ($(( $(date +%s) - start )) s)" $status
grep -m1 "differs" "$tmp/altered.log"

finish
