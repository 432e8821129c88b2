#!/usr/bin/env bash
# What shipping to CloudWatch Logs costs hostd: a unit logging 100 lines a
# second (LINES_PER_SECOND) for 60 s (SECONDS_MEASURED), hostd restarted
# without and then with [cloudwatch] (the AWS stand-in as CloudWatch),
# measured the same way each time: resident memory (VmRSS) at the end, and
# CPU (utime+stime of hostd and of the journalctl runs it waited for) as a
# share of one core. Targets: shipping adds <= 2 MiB and <= 0.5 % of a core.
# LINES_PER_SECOND=0 measures the fixed cost; WITH_SECRETS=1 a host that
# already has an AWS client.
# Not part of CI (tests/bench/README).
source "$(dirname "$0")/common.sh"
RATE=${LINES_PER_SECOND:-100}
WINDOW=${SECONDS_MEASURED:-60}
GROUP="/hostd/bench-$$"
boot bcw
require_idle
CONFIG=/etc/hostd/hostd.toml
in_sandbox cp -p "$CONFIG" "$CONFIG.plain"
# WITH_SECRETS=1: both runs with [secrets] (SSM through the same SDK), as
# on a host that already talks to AWS; the difference is then shipping's
# own cost, without the SDK's first client.
if [ "${WITH_SECRETS:-0}" = 1 ]; then
    in_sandbox sh -c "printf '\n[secrets]\npath = \"/hostd/bench/\"\n' >> $CONFIG"
fi
# RATE=0: no logger, only what hostd ships anyway (the fixed cost).
if [ "$RATE" -gt 0 ]; then
in_sandbox systemd-run --quiet --unit=bench-logger python3 -u -c "
import time, sys
n = 0
start = time.monotonic()
while True:
    n += 1
    print(f'bench line {n:09d} GET /api/orders?page=3 200 12.3ms user=4711 a typical access log line', flush=True)
    time.sleep(max(0, start + n / $RATE - time.monotonic()))
"
fi

measure() { # LABEL: restarts hostd, settles, prints "RSS_KIB CPU_PERCENT"
    in_sandbox systemctl restart hostd
    answers "http://$ADDR:7780/health"
    sleep 10
    local pid tck t0 t1 s0 s1 rss
    read -r pid tck < <(in_sandbox sh -c 'echo $(systemctl show -P MainPID hostd.service) $(getconf CLK_TCK)')
    ticks() { in_sandbox awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat"; }
    t0=$(ticks); s0=$(date +%s.%N)
    sleep "$WINDOW"
    t1=$(ticks); s1=$(date +%s.%N)
    rss=$(in_sandbox awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
    awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$tck" -v rss="$rss" \
        'BEGIN { printf "%d %.3f\n", rss, (t1 - t0) / hz / (s1 - s0) * 100 }'
}

read -r rss_off cpu_off < <(measure off)
in_sandbox sh -c "printf '\n[cloudwatch]\nlog_group = \"$GROUP\"\nunits = [\"bench-logger.service\"]\n' >> $CONFIG"
read -r rss_on cpu_on < <(measure on)
status=$("$HOSTCTL" --config "/var/lib/hostctl/sandbox/$BENCH_NAME/hostctl.toml" status --json \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)[0]["status"].get("shipping"))' || true)
shipped=$(echo "$status" | python3 -c "import ast, sys; print(ast.literal_eval(sys.stdin.read())['shipped_lines'])" || echo 0)
in_sandbox mv "$CONFIG.plain" "$CONFIG"
in_sandbox systemctl stop bench-logger 2>/dev/null || true
echo "shipping: $status" >&2
[ "$shipped" -ge $((RATE * WINDOW * 9 / 10)) ] || { echo "only $shipped lines shipped: the figures would not measure shipping" >&2; exit 1; }
awk -v r0="$rss_off" -v r1="$rss_on" -v c0="$cpu_off" -v c1="$cpu_on" -v rate="$RATE" -v commit="$(git rev-parse --short HEAD)" 'BEGIN {
    printf "at %s, %d lines/s: hostd RSS %.1f -> %.1f MiB (+%.2f, target <= 2), CPU %.3f%% -> %.3f%% of one core (+%.3f, target <= 0.5)\n",
        commit, rate, r0 / 1024, r1 / 1024, (r1 - r0) / 1024, c0, c1, c1 - c0
}'
