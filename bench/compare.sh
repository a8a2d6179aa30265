#!/usr/bin/env bash
# Our broker against Mosquitto 2.0, side by side, on this machine.
#
#   bench/compare.sh          quick mode (< 2 minutes)
#   bench/compare.sh --full   full mode (< 15 minutes)
#   bench/compare.sh --only throughput   (any `mqtt-bench compare` flag)
#
# Builds the release broker and mqtt-bench, installs Debian's mosquitto if
# missing, raises the open-files limit (1000 <-> 1000 pairs and 10k idle
# connections need more than 1024 descriptors), and runs
# `mqtt-bench compare` pinned to CPU 1; it starts each broker pinned to
# CPU 0, a fresh one per run, and stops each by PID. The table is printed
# and appended to bench/RESULTS.md; the raw JSON lines go to stdout.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(nproc)" -lt 2 ]; then
    echo "compare.sh: needs 2 CPUs (broker on CPU 0, generator on CPU 1)" >&2
    exit 1
fi
if ! [ -x /usr/sbin/mosquitto ]; then
    echo "compare.sh: installing mosquitto" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto) >&2
    # The package may start its own service; we start ours on free ports.
fi

cargo build --release -q -p broker -p bench

ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null || true

pid=""
cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        # mqtt-bench stops the broker it is running on SIGTERM.
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

taskset -c 1 target/release/mqtt-bench compare "$@" &
pid=$!
wait "$pid"
status=$?
pid=""
exit "$status"
