#!/usr/bin/env bash
# hostd's idle cost with PostgreSQL, Redis and the API managed: resident
# memory (VmRSS) and CPU (utime+stime over 60 s, as a share of one core).
# Targets: at most 10 MiB and under 0.2 %. Not part of CI (tests/bench/README).
source "$(dirname "$0")/common.sh"
SECONDS_IDLE=${SECONDS_IDLE:-60}
boot bidle
# Let start-up (first rounds, unit loading) settle before measuring.
sleep 10
read -r pid tck < <(in_sandbox sh -c 'echo $(systemctl show -P MainPID hostd.service) $(getconf CLK_TCK)')
ticks() { in_sandbox awk '{print $14 + $15}' "/proc/$pid/stat"; }
t0=$(ticks); s0=$(date +%s.%N)
sleep "$SECONDS_IDLE"
t1=$(ticks); s1=$(date +%s.%N)
rss_kib=$(in_sandbox awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
awk -v t0="$t0" -v t1="$t1" -v s0="$s0" -v s1="$s1" -v hz="$tck" -v rss="$rss_kib" 'BEGIN {
    cpu = (t1 - t0) / hz / (s1 - s0) * 100
    printf "hostd idle: RSS %.1f MiB (target <= 10), CPU %.3f%% of one core over %.0f s (target < 0.2)\n",
        rss / 1024, cpu, s1 - s0
}'
