#!/usr/bin/env bash
# /health latency under a steady ~1000 requests/s for 10 s, from the host
# side against the sandbox's address, one new connection per request (what
# a load balancer does). Debian's wrk has no rate option (it is closed-loop),
# so the load comes from loadgen.py: open-loop, latency measured from each
# request's scheduled time so a stall is not hidden (no coordinated
# omission). Not part of CI (tests/bench/README).
source "$(dirname "$0")/common.sh"
boot blat
python3 tests/bench/loadgen.py --host "$ADDR" --port 7780 --path /health \
    --rate "${RATE:-1000}" --seconds "${DURATION:-10}"
