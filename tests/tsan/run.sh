#!/usr/bin/env bash
# The ThreadSanitizer run of the threaded parts (make test-tsan), on a TSan build (make build-tsan):
#   - the web tier's pending table under concurrent answers, expiry and shutdown (test_web_pending),
#   - the web tier end to end: MHD's threads, the dispatcher, suspended connections, shutdown
#     (tests/e2e/test_web_tier.py, including its slow tests),
#   - the worker's heartbeat thread beside its batch loop (tests/e2e/test_worker.py, including the
#     long batch that only the heartbeat keeps invisible).
# Every TSan report goes to BUILD/tsan-reports/, and the first one stops its process (halt_on_error),
# so a race fails the test it happens in; any report left in the directory fails the run too, and is
# printed. Suppressions, for uninstrumented dependencies only: tests/tsan/suppressions.txt.
#
#   tests/tsan/run.sh [BUILD]        default build-tsan
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${1:-build-tsan}
reports=$PWD/$build/tsan-reports
rm -rf "$reports"
mkdir -p "$reports"
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 \
suppressions=$PWD/tests/tsan/suppressions.txt log_path=$reports/tsan ${TSAN_OPTIONS:-}"

start=$(date +%s)
status=0
ctest --test-dir "$build" -R '^test_web_pending$' --output-on-failure || status=1
IMGCLS_BUILD_DIR=$build .venv/bin/python -m pytest -q tests/e2e/test_web_tier.py tests/e2e/test_worker.py ||
  status=1
if [ -n "$(ls -A "$reports")" ]; then
  for r in "$reports"/*; do
    echo "---- $r"
    cat "$r"
  done
  echo "tsan: ThreadSanitizer reported the races above"
  status=1
fi
echo "tsan: $(( $(date +%s) - start )) s"
exit $status
