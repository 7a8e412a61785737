#!/bin/sh
# summary.sh FILE - add up the "label passed failed skipped" lines that
# run-tests.sh and run-check.sh appended, and print the closing line.
set -u
f=$1
[ -f "$f" ] || { echo "total: 0 passed, 1 failed, 0 skipped"; exit 1; }
awk '{ p[$1] += $2; f[$1] += $3; s[$1] += $4; P += $2; F += $3; S += $4
       if (!($1 in seen)) { seen[$1] = 1; order[n++] = $1 } }
     END { print ""
           for (i = 0; i < n; i++) printf "  %-24s %4d passed, %d failed, %d skipped\n", order[i], p[order[i]], f[order[i]], s[order[i]]
           printf "total: %d passed, %d failed, %d skipped\n", P, F, S
           exit F > 0 }' "$f"
