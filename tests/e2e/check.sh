# Sourced by the end-to-end tests: named checks that count passes and failures, and the summary
# whose status is the test's (non-zero when any check failed).
#   check NAME STATUS     e.g. [[ -s $out ]]; check "output written" $?
#   finish                the last command of the script
# shellcheck shell=bash
passed=0 failed=0
check() {
  if [[ $2 -eq 0 ]]; then
    passed=$((passed + 1))
    echo "ok: $1"
  else
    failed=$((failed + 1))
    echo "FAIL: $1"
  fi
}
finish() {
  echo "$passed passed, $failed failed"
  [[ $failed -eq 0 ]]
}
