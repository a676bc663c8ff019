#!/usr/bin/env bash
# The batch-norm kernels on one GPU, syncbn against PyTorch, in one short run (well under two
# minutes): syncbn-bench-batch-norm (with its CPU correctness check), then
# torch_batch_norm_bench.py on the same shapes, then per shape and layout the ratio of
# bandwidths on the minimal traffic, syncbn / torch (> 1: syncbn is faster), forward, backward
# and both, against torch's SyncBN kernels (torch_syncbn) and F.batch_norm (torch_bn).
#   tests/bench/gpu_bn_bench.sh [build-dir] [extra options for both benches, e.g. --iters 50]
# build-dir defaults to $SYNCBN_BUILD_DIR, else build/ under the source tree. Exit status: that
# of syncbn-bench-batch-norm (1 when its results differ from the CPU kernels').
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
build=${1:-${SYNCBN_BUILD_DIR:-$here/../../build}}
shift $(( $# > 0 ? 1 : 0 ))
bench="$build/syncbn-bench-batch-norm"
if [[ ! -x "$bench" ]]; then
  echo "gpu_bn_bench.sh: $bench not found (build the target syncbn-bench-batch-norm)" >&2
  exit 2
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

echo "== syncbn"
"$bench" "$@" | tee "$out/syncbn.txt"
status=${PIPESTATUS[0]}

echo "== torch"
python3 "$here/torch_batch_norm_bench.py" "$@" | tee "$out/torch.txt"
torch_status=${PIPESTATUS[0]}
if [[ $torch_status -ne 0 ]]; then
  echo "gpu_bn_bench.sh: the PyTorch benchmark did not run (status $torch_status); no ratios" >&2
  exit "$status"
fi

echo "== ratio syncbn / torch (GB/s on the minimal traffic; > 1: syncbn faster)"
python3 - "$out/syncbn.txt" "$out/torch.txt" <<'EOF'
import json
import sys

rows = {}
for path in sys.argv[1:]:
    with open(path) as f:
        for line in f:
            if line.startswith("{"):
                r = json.loads(line)
                rows[(r["n"], r["c"], r["h"], r["w"], r["layout"], r["impl"])] = r
keys = sorted({k[:5] for k in rows}, key=lambda k: (k[0] * k[1] * k[2] * k[3], k))
json_lines = []
print(f"#{'shape':>21} {'layout':>6} {'syncbn %memcpy':>14} "
      f"{'vs torch_syncbn fwd/bwd/all':>28} {'vs torch_bn fwd/bwd/all':>24}")
for k in keys:
    ours = rows.get(k + ("syncbn",))
    if ours is None:
        continue
    cells = []
    for impl in ("torch_syncbn", "torch_bn"):
        theirs = rows.get(k + (impl,))
        if theirs is None:
            cells.append("-")
            continue
        cells.append("/".join(f"{ours[f] / theirs[f]:.2f}"
                              for f in ("fwd_gbps", "bwd_gbps", "all_gbps")))
        json_lines.append(json.dumps({"bench": "batch_norm_ratio", "n": k[0], "c": k[1], "h": k[2],
                          "w": k[3], "layout": k[4], "against": impl,
                          "fwd_ratio": round(ours["fwd_gbps"] / theirs["fwd_gbps"], 3),
                          "bwd_ratio": round(ours["bwd_gbps"] / theirs["bwd_gbps"], 3),
                          "all_ratio": round(ours["all_gbps"] / theirs["all_gbps"], 3),
                          "syncbn_all_pct_memcpy": ours["all_pct_memcpy"]}))
    shape = "x".join(str(v) for v in k[:4])
    print(f" {shape:>21} {k[4]:>6} {ours['all_pct_memcpy']:13.1f}% {cells[0]:>28} {cells[1]:>24}")
for line in json_lines:
    print(line)
EOF
exit "$status"
