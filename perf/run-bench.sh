#!/bin/sh
# run-bench.sh BUILD NAME - run BUILD/perf/bench_NAME, tee its whole output
# to perf/results/NAME.txt, and make sure the last line printed is the
# benchmark's JSON line ({"bench":"NAME",...}); fail if it printed none.
set -u
build=$1 name=$2
bin="$build/perf/bench_$name"
out="perf/results/$name.txt"
mkdir -p perf/results
if [ ! -x "$bin" ]; then
	echo "run-bench.sh: no $bin (make benches first)" >&2
	exit 1
fi
rcf=$(mktemp)
{ "$bin" 2>&1; echo $? >"$rcf"; } | tee "$out"
rc=$(cat "$rcf")
rm -f "$rcf"
json=$(grep "^{\"bench\":\"$name\"" "$out" | tail -n 1)
if [ "$rc" -ne 0 ] || [ -z "$json" ]; then
	echo "run-bench.sh: bench_$name failed (exit $rc) or printed no JSON line" >&2
	exit 1
fi
# anything printed after the JSON line (a late warning on stderr): repeat it
if [ "$(tail -n 1 "$out")" != "$json" ]; then
	echo "$json"
	echo "$json" >>"$out"
fi
