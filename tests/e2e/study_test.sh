#!/usr/bin/env bash
# End-to-end checks of syncbn-study (issue #9) on a tiny synthetic study under syncbn-run:
#  1. 2 ranks x 2 batch sizes x 2 norms x 2 seeds: results.csv has the contract's columns and one
#     row per cell; --max-cells stops early and a rerun runs only the rest (no duplicates);
#  2. a cell that fails (init bogus) is recorded with its error while the others finish, and the
#     study exits non-zero; a syncbn:3 cell on 2 ranks is skipped with a note;
#  3. report.md has its tables and the figures are PNGs (signature and IHDR chunk);
#  4. timing keys in the metrics (from a stand-in syncbn-train) give the time table and figure;
#  4b. sweep axes ([sweep] / --sweep.KEY): cells per setting, rows and CSV record it;
#  6. every example spec is valid; the bn-claims specs have the documented sizes.
#  5. bad specs (unknown key, empty axis, bad norm) fail with a clear message and run nothing.
# Needs SYNCBN_BUILD_DIR (set by ctest). mpirun comes from SYNCBN_MPIRUN or PATH (syncbn-run).
set -uo pipefail
build=${SYNCBN_BUILD_DIR:?SYNCBN_BUILD_DIR must point at the build directory}
study=$build/syncbn-study
[[ -x $study ]] || { echo "FAIL: no $study"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# shellcheck source=tests/e2e/check.sh
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
rows() { grep -c . "$1/results.jsonl"; }
export OMP_NUM_THREADS=1

cat >"$tmp/tiny.cfg" <<'EOF'
ranks = 2
batch-per-rank = 4 8
norms = bn syncbn
seeds = 0 1
lr-rule = linear
lr = 0.1
ref-batch = 16
model = mlp
dataset = synthetic
synthetic-samples = 256
synthetic-shape = 1,8,8
steps = 4
threads = 1
launcher = --oversubscribe
EOF

# 1. a partial run, then the rest.
timeout 300 "$study" run "$tmp/tiny.cfg" --out "$tmp/a" --max-cells 3 >"$tmp/a1.log" 2>&1
check "--max-cells 3 runs and exits 0" $?
[[ $(rows "$tmp/a") -eq 3 ]]
check "3 rows after --max-cells 3" $?
timeout 300 "$study" run "$tmp/tiny.cfg" --out "$tmp/a" >"$tmp/a2.log" 2>&1
check "the rerun exits 0" $?
[[ $(grep -c "skipped .*recorded ok" "$tmp/a2.log") -eq 3 && $(grep -c "^study: \[" "$tmp/a2.log") -eq 5 ]]
check "the rerun skips the 3 recorded cells and runs the 5 others" $?
[[ $(rows "$tmp/a") -eq 8 && $(grep -o '"cell":"[^"]*"' "$tmp/a/results.jsonl" | sort -u | wc -l) -eq 8 ]]
check "8 rows, 8 distinct cells" $?
[[ $(wc -l <"$tmp/a/results.csv") -eq 9 && $(grep -c ',ok,' "$tmp/a/results.csv") -eq 8 ]]
check "results.csv: a header and 8 ok rows" $?
header=$(head -1 "$tmp/a/results.csv")
missing=""
for column in cell ranks batch_per_rank global_batch norm seed mode lr model status error \
  final_test_accuracy best_test_accuracy final_test_loss images_per_second seconds steps \
  time_data time_forward time_backward time_syncbn_comm time_grad_comm_exposed time_optimizer \
  time_other bytes_syncbn_allreduce bytes_grad_allreduce collectives_grad_allreduce command \
  metrics_file; do
  [[ ",$header," == *",$column,"* ]] || missing+=" $column"
done
[[ -z $missing ]]
check "results.csv has every contract column${missing:+ (missing:$missing)}" $?
grep -q 'np2-b8-syncbn-s1,ok,2,8,16,syncbn,1,weak,0.1,mlp,' "$tmp/a/results.csv"
check "a row holds the cell's settings and the linear-rule lr (0.1 * 16 / 16)" $?
[[ -s $tmp/a/cells/np2-b4-bn-s0/log.txt && -s $tmp/a/cells/np2-b4-bn-s0/metrics.jsonl ]]
check "each cell has its log and metrics" $?
# A recorded cell whose metrics are gone (a clone without cells/) runs again, the others do not.
rm "$tmp/a/cells/np2-b4-bn-s0/metrics.jsonl"
timeout 300 "$study" run "$tmp/tiny.cfg" --out "$tmp/a" >"$tmp/a3.log" 2>&1 &&
  grep -q "np2-b4-bn-s0 runs again: its metrics file" "$tmp/a3.log" &&
  [[ $(grep -c "^study: \[" "$tmp/a3.log") -eq 1 && -s $tmp/a/cells/np2-b4-bn-s0/metrics.jsonl &&
     $(rows "$tmp/a") -eq 9 && $(grep -c '"cell":"np2-b4-bn-s0"' "$tmp/a/results.jsonl") -eq 2 ]]
check "a cell whose metrics file is gone runs again (only it): a 9th row, its second" $?

# 2. a failing cell among good ones.
# syncbn-train's parser takes any --init text; the run rejects "bogus".
timeout 300 "$study" run "$tmp/tiny.cfg" --out "$tmp/f" --batch-per-rank 4 --seeds 0 \
  --norms "bn syncbn:3" --sweep.init "kaiming bogus" >"$tmp/f.log" 2>&1
code=$?
[[ $code -eq 1 && $(rows "$tmp/f") -eq 2 ]] && grep -q '"status":"failed".*' "$tmp/f/results.jsonl" &&
  grep -q 'np2-b4-init=kaiming-bn-s0,ok' "$tmp/f/results.csv" &&
  grep -q "np2-b4-init=bogus-bn-s0,failed,.*unknown init scheme 'bogus'" "$tmp/f/results.csv"
check "init bogus is recorded failed with its error, kaiming still runs, exit 1 (got $code)" $?
grep -q "1 of 2 cells failed: np2-b4-init=bogus-bn-s0" "$tmp/f.log"
check "the summary names the failed cell" $?
grep -q "skipped: syncbn:3 needs a multiple of 3 ranks, not 2" "$tmp/f.log"
check "syncbn:3 on 2 ranks is skipped with a note" $?
timeout 300 "$study" run "$tmp/tiny.cfg" --out "$tmp/f" --batch-per-rank 4 --seeds 0 \
  --norms "bn syncbn:3" --sweep.init "kaiming bogus" >"$tmp/f2.log" 2>&1
code=$?
[[ $code -eq 1 && $(rows "$tmp/f") -eq 3 &&
   $(grep -c '"cell":"np2-b4-init=bogus-bn-s0".*"status":"failed"' "$tmp/f/results.jsonl") -eq 2 ]] &&
  grep -q "skipped np2-b4-init=kaiming-bn-s0" "$tmp/f2.log"
check "a rerun retries only the failed cell and keeps its earlier failed row (got $code)" $?

# 3. the report.
timeout 120 "$study" report "$tmp/a" >"$tmp/report.log" 2>&1
check "report exits 0" $?
report=$tmp/a/report.md
grep -q '^## Test error' "$report" && grep -q '^### 2 ranks' "$report" &&
  grep -q '^| batch/rank | bn | syncbn |' "$report" && grep -qE '^\| 4 \| .*±.*\*\*' "$report" &&
  grep -q '^## Throughput' "$report" && grep -q 'SyncBN/BN' "$report" &&
  grep -q '^## Time per step' "$report"
check "report.md has the error, throughput and time sections" $?
is_png() {  # the 8-byte PNG signature, then the IHDR chunk's length (13) and type
  [[ $(od -An -tx1 -N16 "$1" | tr -d ' \n') == 89504e470d0a1a0a0000000d49484452 ]]
}
if command -v gnuplot >/dev/null; then
  is_png "$tmp/a/figures/error_vs_batch_np2.png" && [[ -s $tmp/a/figures/error_vs_batch_np2.dat &&
    -s $tmp/a/figures/error_vs_batch_np2.gp ]]
  check "the error figure is a PNG, with its .dat and .gp" $?
else
  echo "skip: no gnuplot (apt-get install gnuplot-nox): PNGs not checked"
fi

# 4. timing keys, as the timing-enabled syncbn-train writes them, from a stand-in.
mkdir -p "$tmp/fake"
cat >"$tmp/fake/syncbn-train" <<'EOF'
#!/usr/bin/env bash
while [[ $# -gt 0 ]]; do [[ $1 == --metrics ]] && metrics=$2; shift; done
[[ ${OMPI_COMM_WORLD_RANK:-0} == 0 ]] || exit 0
for epoch in 1 2; do
  echo "{\"epoch\":$epoch,\"step\":$((epoch * 10)),\"steps_in_epoch\":10,\"test_accuracy\":0.9,\"test_loss\":0.3,\"images_per_second\":1000,\"time\":{\"data\":0.01,\"forward\":0.05,\"backward\":0.08,\"syncbn_comm\":0.02,\"grad_comm_exposed\":0.01,\"optimizer\":0.02,\"eval\":0.1,\"other\":0.01},\"bytes\":{\"syncbn_allreduce\":4000,\"grad_allreduce\":90000,\"other\":8},\"collectives\":{\"syncbn_allreduce\":40,\"grad_allreduce\":20,\"other\":1}}" >>"$metrics"
done
EOF
chmod +x "$tmp/fake/syncbn-train"
timeout 120 "$study" run "$tmp/tiny.cfg" --out "$tmp/t" --build "$tmp/fake" --seeds 0 \
  --batch-per-rank 4 >"$tmp/t.log" 2>&1 && timeout 120 "$study" report "$tmp/t" >>"$tmp/t.log" 2>&1
check "a study over the stand-in runs and reports" $?
grep -q "\"time_per_step\":{\"backward\":0.008" "$tmp/t/results.jsonl" &&
  grep -q "\"bytes_per_step\":{\"grad_allreduce\":9000" "$tmp/t/results.jsonl"
check "per-step time and bytes: epoch totals / steps" $?
grep -qE '^\| 2 \| 4 \| bn \| 1\.000 \| 5\.000 \| 8\.000 \| 2\.000 \| 1\.000 \| 2\.000 \| 1\.000 \| 18\.000 \|' "$tmp/t/report.md"
check "the time table: ms per step by component, total of the disjoint parts" $?
if command -v gnuplot >/dev/null; then
  is_png "$tmp/t/figures/time_breakdown.png"
  check "the stacked time figure is a PNG" $?
fi

printf '# Projection\nmade by another tool\n' >"$tmp/t/projection.md"
timeout 120 "$study" report "$tmp/t" >>"$tmp/t.log" 2>&1 &&
  grep -q '\[projection.md\](projection.md)' "$tmp/t/report.md" &&
  grep -q '^made by another tool' "$tmp/t/report.md"
check "report.md links and includes DIR/projection.md" $?

# A cell that hangs is stopped by --timeout-per-cell, with its ranks, and recorded failed.
mkdir -p "$tmp/hang"
printf '#!/usr/bin/env bash\nsleep 60\n' >"$tmp/hang/syncbn-train"
chmod +x "$tmp/hang/syncbn-train"
start=$SECONDS
timeout 60 "$study" run "$tmp/tiny.cfg" --out "$tmp/h" --build "$tmp/hang" --max-cells 1 \
  --timeout-per-cell 1 >"$tmp/h.log" 2>&1
code=$?
[[ $code -eq 1 && $((SECONDS - start)) -lt 30 ]] &&
  grep -q '"error":"timed out after 1 s"' "$tmp/h/results.jsonl"
check "--timeout-per-cell 1 stops a hanging cell and records it (exit $code, $((SECONDS - start)) s)" $?

# 4b. sweep axes: any syncbn-train option as an axis; rows record the setting.
grep -v '^lr = ' "$tmp/tiny.cfg" >"$tmp/sweep.cfg"  # lr is either fixed or an axis
! timeout 300 "$study" run "$tmp/tiny.cfg" --out "$tmp/s0" --sweep.lr "0.05 0.2" --dry-run \
  >"$tmp/s0.log" 2>&1 && grep -q "lr is both a fixed key and a \[sweep\] axis" "$tmp/s0.log"
check "a key both fixed and swept is refused" $?
timeout 300 "$study" run "$tmp/sweep.cfg" --out "$tmp/s" --batch-per-rank 4 --norms bn --seeds 0 \
  --sweep.lr "0.05 0.2" --sweep.init "xavier zeros" >"$tmp/s.log" 2>&1
check "a study with two sweep axes runs and exits 0" $?
[[ $(rows "$tmp/s") -eq 4 && -s $tmp/s/cells/np2-b4-init=zeros-lr=0.2-bn-s0/metrics.jsonl ]]
check "2 x 2 sweep values give 4 rows, each cell named by its setting" $?
grep -q '"cell":"np2-b4-init=zeros-lr=0.2-bn-s0".*"lr":0.1,.*"sweep":{"init":"zeros","lr":"0.2"}' \
  "$tmp/s/results.jsonl"
check "the row records the sweep setting and the swept lr under the linear rule (0.2 * 8/16)" $?
grep -q 'np2-b4-init=zeros-lr=0.2-bn-s0,ok,.*,init=zeros lr=0.2,' "$tmp/s/results.csv" &&
  grep -q -- '--init zeros' "$tmp/s/cells/np2-b4-init=zeros-lr=0.2-bn-s0/log.txt"
check "results.csv has the setting and the cell ran with --init zeros" $?
# A results.csv of an older syncbn-study (without the sweep column) is rewritten at the next run.
sed -i '1s/,sweep,/,/' "$tmp/s/results.csv"
timeout 300 "$study" run "$tmp/sweep.cfg" --out "$tmp/s" --batch-per-rank 4 --norms bn --seeds 0 \
  --sweep.lr "0.05 0.2" --sweep.init "xavier zeros" >"$tmp/s2.log" 2>&1 &&
  head -1 "$tmp/s/results.csv" | grep -q ',sweep,' && [[ $(grep -c . "$tmp/s/results.csv") -eq 5 ]]
check "a stale results.csv header is rewritten from results.jsonl" $?

# 5. bad input.
expect_bad() {  # expect_bad NAME MESSAGE SPEC-LINES
  printf '%s\n' "$3" >"$tmp/bad.cfg"
  out=$("$study" run "$tmp/bad.cfg" --out "$tmp/bad" 2>&1)
  code=$?
  [[ $code -eq 2 && $out == *"$2"* && ! -e $tmp/bad ]]
  check "$1 fails naming it (exit $code: $out)" $?
}
good='ranks = 2
batch-per-rank = 4'
expect_bad "an unknown key" "unknown key 'colour'" "$good
norms = bn
colour = blue"
expect_bad "an empty axis" "norms is empty" "$good
norms ="
expect_bad "a bad norm" "unknown norm 'batchnorm'" "$good
norms = bn batchnorm"
expect_bad "a key the study sets per cell" "'batch-size' is set per cell" "$good
norms = bn
batch-size = 8"
"$study" run "$tmp/tiny.cfg" --out "$tmp/dry" --dry-run >"$tmp/dry.log" 2>&1
[[ $? -eq 0 && $(grep -c 'syncbn-run -np 2 --oversubscribe -- .*syncbn-train --model mlp' "$tmp/dry.log") -eq 8 && ! -e $tmp/dry ]]
check "--dry-run prints the 8 commands and runs nothing" $?

source_dir=${SYNCBN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
for spec in "$source_dir"/examples/studies/*.cfg; do
  name=${spec##*/}  # not $(basename ...) in the message: it would reset $? before check reads it
  "$study" run "$spec" --out "$tmp/dry" --dry-run >"$tmp/dry.log" 2>&1 && grep -q 'syncbn-train' "$tmp/dry.log"
  check "the example spec $name is valid (--dry-run)" $?
done
# The batch-norm claim studies: their sizes are what docs/studies/bn-claims.md describes.
for entry in lr:24 lr-momentum:24 init:72 placement:12 dropout:12 batch:72; do
  name=${entry%%:*} cells=${entry#*:}
  "$study" run "$source_dir/examples/studies/bn-claims-$name.cfg" --out "$tmp/dry" --dry-run \
    >"$tmp/dry.log" 2>&1 && [[ $(grep -c ': .*syncbn-train --model mlp' "$tmp/dry.log") -eq $cells ]]
  check "bn-claims-$name.cfg expands to $cells cells" $?
done
SYNCBN_STUDY=$study "$source_dir/examples/studies/bn-claims.sh" "$tmp/claims" sideways >"$tmp/claims.log" 2>&1
[[ $? -eq 2 ]] && grep -q "no study 'sideways'" "$tmp/claims.log" && [[ ! -e $tmp/claims ]]
check "bn-claims.sh rejects an unknown study name and runs nothing" $?

finish
