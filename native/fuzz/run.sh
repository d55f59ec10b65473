#!/bin/sh
# Runs every libFuzzer harness that `make -C native fuzz` built (native/build/fuzz/fuzz_*) for
# FUZZ_SECONDS seconds each (default 60), one after the other, each with its own corpus directory
# (native/build/fuzz/corpus-<name>, kept between runs) and artifact directory
# (native/build/fuzz/artifacts-<name>/, where a crashing input is written). Prints one summary line
# per fuzzer and exits non-zero if any of them crashed, timed out or ran out of memory.
#   FUZZ_SECONDS=180 sh native/fuzz/run.sh
#   FUZZ_ONLY=fuzz_mq sh native/fuzz/run.sh      (one fuzzer)
#   FUZZ_ARGS="-jobs=2 -workers=2" sh native/fuzz/run.sh   (extra libFuzzer flags)
set -u
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "$here/.." && pwd)/build/fuzz
secs=${FUZZ_SECONDS:-60}
only=${FUZZ_ONLY:-}
extra=${FUZZ_ARGS:-}

if [ ! -d "$build" ]; then
  echo "fuzz: nothing built in $build (run: make -C native fuzz)" >&2
  exit 2
fi

total=0
failed=0
for bin in "$build"/fuzz_*; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  name=$(basename "$bin")
  [ -n "$only" ] && [ "$only" != "$name" ] && continue
  corpus="$build/corpus-$name"
  art="$build/artifacts-$name"
  log="$build/$name.log"
  mkdir -p "$corpus" "$art"
  before=$(ls "$art" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-')
  total=$((total + 1))
  echo "fuzz: $name for ${secs}s (corpus $corpus, log $log)"
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$art/" $extra "$corpus" >"$log" 2>&1
  rc=$?
  after=$(ls "$art" | grep -cE '^(crash|leak|timeout|oom|slow-unit)-')
  crashes=$((after - before))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.* ft: \([0-9]*\).*/\1/p')
  units=$(ls "$corpus" | wc -l | tr -d ' ')
  if [ "$rc" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    status="FAIL (exit $rc)"
    failed=$((failed + 1))
  else
    status=ok
  fi
  echo "fuzz: $name: $status execs=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} ft=${ft:-?} corpus=$units crashes=$crashes"
  if [ "$status" != ok ]; then
    grep -m 5 -E 'ERROR|invariant failed|runtime error|deadly signal|Test unit written|SUMMARY' "$log" |
      sed 's/^/    /'
    echo "    reproduce: $bin <crash file>   (full log: $log)"
  fi
done

if [ "$total" -eq 0 ]; then
  echo "fuzz: no fuzzer binaries in $build" >&2
  exit 2
fi
echo "fuzz: $total fuzzers, $failed failed"
[ "$failed" -eq 0 ]
