#!/usr/bin/env bash
# Runs the fuzz targets of a fuzz build (make build-fuzz): for each target, first every saved crash
# input in tests/fuzz/regressions/<target>/ once, then libFuzzer for SECONDS, FUZZ_JOBS targets at a
# time. Fails when any target crashes, and says where the input is and how to keep it as a
# regression. The corpus grows in BUILD/corpus/<target>/ from the generated seeds (BUILD/seeds, see
# make_seeds.py) and the committed ones (tests/fuzz/seeds).
#
#   tests/fuzz/run.sh BUILD SECONDS        e.g. tests/fuzz/run.sh build-fuzz 30
#   FUZZ_TARGETS="message url" FUZZ_JOBS=1 tests/fuzz/run.sh build-fuzz 60
set -uo pipefail
cd "$(dirname "$0")/../.."

build=${1:?usage: run.sh BUILD SECONDS}
seconds=${2:?usage: run.sh BUILD SECONDS}
jobs=${FUZZ_JOBS:-2}
targets=${FUZZ_TARGETS:-$(cd "$build" && ls fuzz_* | sed 's/^fuzz_//')}
logs=$build/fuzz-logs
mkdir -p "$logs"

# Largest input per target: a little over what its parser meets in practice, so that the time goes
# into the structure of inputs, not their bulk.
max_len() {
  case $1 in
    image) echo 65536 ;;
    model_file) echo 16384 ;;
    message | web_upload | aws_response) echo 8192 ;;
    exif | url | config) echo 2048 ;;
    *) echo 1024 ;;
  esac
}

# One target: its regressions, then the fuzzing. Writes $logs/<target>.log; exit status 0 or 1.
run_target() {
  local t=$1 bin=$build/fuzz_$1 log=$logs/$1.log
  local regress=tests/fuzz/regressions/$t
  : > "$log"
  rm -f "$logs/$t.rc"
  if [ -d "$regress" ] && [ -n "$(ls -A "$regress")" ]; then
    if ! "$bin" "$regress"/* >> "$log" 2>&1; then
      echo "REGRESSION FAILED" >> "$log"
      return 1
    fi
  fi
  local corpus=$build/corpus/$t artifacts=$build/artifacts/$t
  mkdir -p "$corpus" "$artifacts"
  local dirs=("$corpus")
  for d in "$build/seeds/$t" "tests/fuzz/seeds/$t"; do
    [ -d "$d" ] && dirs+=("$d")
  done
  local timeout=10
  [ "$t" = web_upload ] && timeout=30
  "$bin" -max_total_time="$seconds" -print_final_stats=1 -max_len="$(max_len "$t")" -timeout="$timeout" \
    -artifact_prefix="$artifacts/" "${dirs[@]}" >> "$log" 2>&1
}

export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
start=$(date +%s)
for t in $targets; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do
    wait -n
  done
  (run_target "$t"; echo $? > "$logs/$t.rc") &
done
wait

status=0
printf '%-12s %12s %10s  %s\n' target executions exec/s result
for t in $targets; do
  rc=$(cat "$logs/$t.rc" 2>/dev/null || echo 1)
  log=$logs/$t.log
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  result=ok
  if [ "$rc" -ne 0 ]; then
    result="FAILED (exit $rc, log $log)"
    status=1
  fi
  printf '%-12s %12s %10s  %s\n' "$t" "${execs:--}" "${rate:--}" "$result"
  if [ "$rc" -ne 0 ]; then
    tail -n 40 "$log" | sed 's/^/    /'
    for a in "$build/artifacts/$t"/*; do
      [ -f "$a" ] || continue
      echo "    input: $a"
      echo "    keep it: mkdir -p tests/fuzz/regressions/$t && cp $a tests/fuzz/regressions/$t/"
    done
  fi
done
echo "fuzz: $(( $(date +%s) - start )) s, ${seconds} s per target, $jobs at a time"
exit $status
