#!/usr/bin/env bash
# Every C++ and CUDA source of the project (src, include, tests, examples: *.h *.cpp *.cu *.cuh)
# is formatted as .clang-format says: clang-format --dry-run --Werror passes. Prints the files
# that are not, with their first lines that differ.
set -uo pipefail
root=${SYNCBN_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
command -v clang-format >/dev/null || { echo "skip: clang-format not installed (cmake/install-deps.sh --with-test-tools)"; exit 77; }
cd "$root" || exit 1
mapfile -t sources < <(find src include tests examples -type f \
  \( -name '*.h' -o -name '*.cpp' -o -name '*.cu' -o -name '*.cuh' \) | sort)
echo "$(clang-format --version), ${#sources[@]} files"
report=$(clang-format --dry-run --Werror "${sources[@]}" 2>&1) && {
  echo "${#sources[@]} passed, 0 failed"
  exit 0
}
# Each difference reads FILE:LINE:COL: error: code should be clang-formatted.
mapfile -t unformatted < <(grep -oE '^[^ :]+:[0-9]+:[0-9]+: error' <<<"$report" | cut -d: -f1 | uniq)
if [[ ${#unformatted[@]} -eq 0 ]]; then
  echo "clang-format failed:"
  echo "$report"
  exit 1
fi
for file in "${unformatted[@]}"; do
  lines=$(grep -oE "^$file:[0-9]+" <<<"$report" | cut -d: -f2 | uniq | head -5 | paste -sd, -)
  echo "not formatted: $file (lines $lines)"
done
echo "$((${#sources[@]} - ${#unformatted[@]})) passed, ${#unformatted[@]} failed; fix with:"
echo "  clang-format -i ${unformatted[*]}"
exit 1
