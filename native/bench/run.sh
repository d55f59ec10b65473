#!/bin/sh
# Runs the native benchmarks built by `make -C native bench` (builds nothing itself).
#   sh native/bench/run.sh [--json]        the IPC benchmark; knobs: BENCH_* in the environment, see --help
#   sh native/bench/run.sh copy [--gib N]  the receiver's copy alone: reused vs freshly malloc'd destinations
# npm run bench:native -- --json  passes --json through.
dir=$(cd "$(dirname "$0")/.." && pwd)
name=bench_ipc
if [ "$1" = copy ]; then
  name=bench_copy
  shift
fi
bin="$dir/build/bench/$name"
if [ ! -x "$bin" ]; then
  echo "bench: $bin not built; run: make -C native bench" >&2
  exit 2
fi
exec "$bin" "$@"
