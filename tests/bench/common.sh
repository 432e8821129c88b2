# Shared by the benchmarks (sourced). Benchmarks are commands, not tests:
# they are not part of tests/run or CI, their figures depend on the machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
[ "$(id -u)" = 0 ] || { echo "benchmarks boot a sandbox host and must run as root" >&2; exit 1; }

# A release hostd is what runs on hosts; the debug one is several times
# bigger and slower. The demo API comes from the debug build.
cargo build --release -p hostd >&2
cargo build --workspace --bins >&2
HOSTCTL=target/debug/hostctl

boot() { # NAME -> sets ADDR; tears the sandbox down on exit
    BENCH_NAME=$1
    trap '"$HOSTCTL" sandbox down --name "$BENCH_NAME" >/dev/null 2>&1 || true' EXIT
    "$HOSTCTL" sandbox up --name "$BENCH_NAME" --hostd target/release/hostd \
        --api target/debug/demo-backend >&2
    ADDR=$("$HOSTCTL" sandbox list | awk -v n="$BENCH_NAME" '$1 == n {print $2}')
    [ -n "$ADDR" ] || { echo "sandbox $BENCH_NAME has no address" >&2; exit 1; }
    answers "http://$ADDR:7780/health"
}

answers() { # URL: waits up to 60 s for a 200 from it, else exits
    for _ in $(seq 60); do
        curl -fs -m 2 -o /dev/null "$1" && return 0
        sleep 1
    done
    echo "sandbox $BENCH_NAME: $1 never answered 200" >&2
    exit 1
}

in_sandbox() { "$HOSTCTL" sandbox exec --name "$BENCH_NAME" -- "$@"; }

require_idle() { # exits unless the machine is at least 90 % idle over 3 s (IDLE_CHECK=0 skips)
    [ "${IDLE_CHECK:-1}" = 0 ] && return 0
    local before after
    before=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 3
    after=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    read -r busy_percent < <(echo "$before $after" | awk '{
        busy = $3 - $1; idle = $4 - $2; print int(100 * busy / (busy + idle + 1)) }')
    if [ "$busy_percent" -gt 10 ]; then
        echo "the machine is $busy_percent % busy (over 3 s): figures would measure that too; stop what runs, or IDLE_CHECK=0" >&2
        exit 1
    fi
}
