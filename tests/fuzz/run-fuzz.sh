#!/bin/sh
# run-fuzz.sh BIN SECONDS SEEDS WORK [libFuzzer flags...]
#
# Run one libFuzzer target (already built: this script builds nothing) for
# SECONDS over the committed seed corpus SEEDS (read only; several
# directories may be given separated by ':', missing ones are skipped) and
# the working corpus WORK (new inputs go there, never into the tree).  Logs go to
# OUT/logs/, a crash, hang or broken invariant leaves its input in
# OUT/crashes/ and fails the run, where OUT is the directory above WORK's
# parent (build-fuzz for build-fuzz/corpus/<target>).
# Prints one line: executions, executions per second, coverage, corpus.
set -u
if [ $# -lt 4 ]; then
	echo "usage: run-fuzz.sh BIN SECONDS SEEDS WORK [libFuzzer flags...]" >&2
	exit 2
fi
bin=$1 secs=$2 seeds=$3 work=$4
shift 4
name=$(basename "$bin")
out=$(dirname "$(dirname "$work")")
crashes="$out/crashes"
log="$out/logs/$name.log"
mkdir -p "$work" "$crashes" "$out/logs"
if [ ! -x "$bin" ]; then
	echo "run-fuzz: $bin is not built" >&2
	exit 1
fi
dirs=
nseeds=0
for d in $(echo "$seeds" | tr ':' ' '); do
	[ -d "$d" ] || continue
	dirs="$dirs $d"
	nseeds=$((nseeds + $(ls "$d" | wc -l)))
done
start=$(date +%s)
# -timeout: one input taking 10 s is a hang (the reader is bounded by the
# ring's size); -rss_limit_mb: memory is bounded by promise (R5).
"$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 \
	-rss_limit_mb=2048 -artifact_prefix="$crashes/$name-" "$@" \
	"$work" $dirs >"$log" 2>&1
rc=$?
took=$(( $(date +%s) - start ))
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
ft=$(grep -o 'ft: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2)
if [ $rc -eq 0 ]; then verdict=ok; else verdict=FAIL; fi
printf '  %-12s %-4s %s execs in %ss (%s/s), cov %s, ft %s, corpus %s seeds + %s found\n' \
	"$name" "$verdict" "${execs:-?}" "$took" "${rate:-?}" "${cov:-?}" \
	"${ft:-?}" "$nseeds" "$(ls "$work" | wc -l)"
if [ $rc -ne 0 ]; then
	echo "---- $name failed (exit $rc); last 40 lines of $log ----"
	tail -n 40 "$log"
	ls -1 "$crashes/$name"-* 2>/dev/null | sed 's/^/  reproducer: /'
fi
exit $rc
