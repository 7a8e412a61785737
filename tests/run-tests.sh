#!/bin/sh
# run-tests.sh BUILD LABEL TIMEOUT TEST... - run each test program alone under
# a timeout.  Exit 0 = pass, 77 = skip (the test prints why), else fail.
# Logs go to BUILD/test-logs/; a failing test's log is printed.
set -u
build=$1 label=$2 tmo=$3
shift 3
logs="$build/test-logs"
mkdir -p "$logs"
pass=0 fail=0 skip=0 failed=""
for t in "$@"; do
	bin="$build/tests/$t"
	log="$logs/$t.log"
	start=$(date +%s)
	# In a session of its own: whatever the test leaves behind (a child
	# of a failed assertion, a daemon it started) is killed when it ends,
	# so that nothing outlives it to eat the CPU of the tests after it.
	sidf=$(mktemp)
	setsid --wait sh -c 'echo $$ >"$1"; shift; exec "$@"' sh "$sidf" \
		timeout --kill-after=10 "$tmo" "$bin" >"$log" 2>&1
	rc=$?
	sid=$(cat "$sidf")
	rm -f "$sidf"
	if [ -n "$sid" ] && pkill -KILL -s "$sid" 2>/dev/null; then
		echo "run-tests: killed what $t left running" >>"$log"
	fi
	secs=$(( $(date +%s) - start ))
	case $rc in
	0) pass=$((pass + 1)); printf '  PASS  %-32s %4ss\n' "$t" "$secs" ;;
	77) skip=$((skip + 1))
	    printf '  SKIP  %-32s %s\n' "$t" "$(grep -m1 -i 'skip' "$log" | cut -c1-100)" ;;
	124|137) fail=$((fail + 1)); failed="$failed $t"
	    printf '  FAIL  %-32s timed out after %ss\n' "$t" "$tmo" ;;
	*) fail=$((fail + 1)); failed="$failed $t"
	    printf '  FAIL  %-32s exit %s\n' "$t" "$rc" ;;
	esac
done
for t in $failed; do
	echo "---- $label: $t (last 60 lines of $logs/$t.log) ----"
	tail -n 60 "$logs/$t.log"
done
echo "$label: $pass passed, $fail failed, $skip skipped"
[ -n "${CKPT_SUMMARY:-}" ] && echo "$label $pass $fail $skip" >>"$CKPT_SUMMARY"
[ "$fail" -eq 0 ]
