#!/bin/sh
# run-check.sh LABEL LOG COMMAND... - run one whole-tree check (valgrind,
# cppcheck, a fuzz smoke) as one test: PASS or FAIL with its log's tail, and
# a line "LABEL passed failed skipped" appended to $CKPT_SUMMARY if set.
set -u
label=$1 log=$2
shift 2
mkdir -p "$(dirname "$log")"
start=$(date +%s)
"$@" >"$log" 2>&1
rc=$?
secs=$(( $(date +%s) - start ))
if [ $rc -eq 0 ]; then
	printf '  PASS  %-32s %4ss\n' "$label" "$secs"
	[ -n "${CKPT_SUMMARY:-}" ] && echo "$label 1 0 0" >>"$CKPT_SUMMARY"
else
	printf '  FAIL  %-32s exit %s\n' "$label" "$rc"
	echo "---- $label (last 60 lines of $log) ----"
	tail -n 60 "$log"
	[ -n "${CKPT_SUMMARY:-}" ] && echo "$label 0 1 0" >>"$CKPT_SUMMARY"
fi
exit $rc
