#!/bin/sh
# Runs the native IPC benchmark built by `make -C native bench` (builds nothing itself).
#   sh native/bench/run.sh [--json]        knobs: BENCH_* in the environment, see --help
# npm run bench:native -- --json  passes --json through.
dir=$(cd "$(dirname "$0")/.." && pwd)
bin="$dir/build/bench/bench_ipc"
if [ ! -x "$bin" ]; then
  echo "bench: $bin not built; run: make -C native bench" >&2
  exit 2
fi
exec "$bin" "$@"
