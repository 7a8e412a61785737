#!/bin/sh
# deps.sh - make sure the Debian packages shmckpt builds and tests with are
# installed.  As root it installs what is missing; otherwise it prints the
# exact apt-get line and fails, so nobody has to guess.
#   usage: ./deps.sh [extra-package ...]
set -u
PKGS="gcc make liburing-dev libxxhash-dev librdkafka-dev libcmocka-dev \
pkg-config coreutils util-linux e2fsprogs kcat systemtap-sdt-dev clang \
valgrind cppcheck python3 binutils linux-perf prometheus \
python3-prometheus-client $*"
missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing="$missing $p"
	fi
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" = 0 ]; then
	echo "deps.sh: installing:$missing" >&2
	export DEBIAN_FRONTEND=noninteractive
	{ apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >&2 || {
		echo "deps.sh: apt-get failed; run it by hand: apt-get install -y$missing" >&2
		exit 1
	}
	exit 0
fi
echo "deps.sh: missing Debian packages. Run as root:" >&2
echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
exit 1
