#!/bin/sh
# Runs each native test binary in its own process and prints the plain closing line.
variant=$1; shift
pass=0; fail=0
for t in "$@"; do
  name=$(basename "$t")
  if out=$("$t" 2>&1); then
    pass=$((pass+1)); echo "ok - native/$variant/$name"
  else
    fail=$((fail+1)); echo "not ok - native/$variant/$name"; echo "$out" | sed 's/^/    # /' | tail -n 60
  fi
done
echo "native ($variant): $pass passed, $fail failed"
[ "$fail" -eq 0 ]
