#!/usr/bin/env bash
# hostd's front against the instance behind it: an app declared in
# hostd.toml with a `port` (the release demo API on `$PORT`), measured
# through the front (its public port) and directly (the instance's private
# port, opened to the host for this benchmark only):
#   - requests per second and p99 over kept-alive connections at 1, 50 and
#     500 concurrent (wrk, closed loop, DURATION s each), for /version
#     (answered from memory) and /notes (one PostgreSQL query);
#   - p50/p99 at a steady 500 req/s, a new connection per request
#     (loadgen.py, open loop), the load balancer's view;
#   - the front's idle RSS before any load;
#   - failed requests at 500 and 2000 req/s (RATES) on new connections
#     while the app is deployed through the front (target 0).
# Targets (issue 18): p99 added <= 1 ms at 500 req/s, throughput >= 90 % of
# direct, front idle RSS <= 10 MiB. Needs wrk (apt-get install wrk). Not
# part of CI (tests/bench/README).
source "$(dirname "$0")/common.sh"
command -v wrk >/dev/null || { echo "front.sh needs wrk: apt-get install wrk" >&2; exit 1; }
DURATION=${DURATION:-10}
PUBLIC=8400
PRIVATE=18401
boot bfront
in_sandbox sh -c "cat >> /etc/hostd/hostd.toml <<'EOF'

[services.bench]
command = \"env LISTEN_ADDR=0.0.0.0:\$PORT bin/api\"
port = $PUBLIC
health_path = \"/version\"
release_dir = \"/srv/bench\"
database = \"bench\"
environment = { DATABASE_URL = \"host=/run/postgresql dbname=bench\" }
EOF
install -d -m 0755 /srv/bench/releases
cp -a \"\$(readlink -f /srv/api/current)\" /srv/bench/releases/b1
ln -sfn releases/b1 /srv/bench/current
systemctl restart hostd"
answers "http://$ADDR:$PUBLIC/version"
sleep 5
front_pid=$(in_sandbox systemctl show -P MainPID hostd-front.service)
rss_kib=$(in_sandbox awk '/^VmRSS/ {print $2}' "/proc/$front_pid/status")
awk -v rss="$rss_kib" 'BEGIN { printf "front idle: RSS %.1f MiB (target <= 10)\n", rss / 1024 }'

wrk_line() { # URL CONNECTIONS -> "req/s p99"
    # wrk wants at least as many connections as threads.
    wrk -t "$(( $2 < 2 ? 1 : 2 ))" -c "$2" -d "${DURATION}s" --latency "$1" |
        awk '/Requests\/sec/ {rps=$2} $1 == "99%" {p99=$2} END {print rps, p99}'
}
# /version answers from memory (the front's cost shows at its largest);
# /notes runs one PostgreSQL query, as an API request does.
curl -fs -m 5 -o /dev/null "http://$ADDR:$PUBLIC/notes" || { echo "/notes does not answer" >&2; exit 1; }
for path in /version /notes; do
    for c in 1 50 500; do
        read -r front_rps front_p99 < <(wrk_line "http://$ADDR:$PUBLIC$path" "$c")
        read -r direct_rps direct_p99 < <(wrk_line "http://$ADDR:$PRIVATE$path" "$c")
        awk -v p="$path" -v c="$c" -v fr="$front_rps" -v dr="$direct_rps" -v fp="$front_p99" -v dp="$direct_p99" 'BEGIN {
            printf "keep-alive, %s, %3d connections: front %8.0f req/s p99 %s; direct %8.0f req/s p99 %s; throughput %.0f%% of direct\n",
                p, c, fr, fp, dr, dp, fr / dr * 100
        }'
    done
done
python3 tests/bench/loadgen.py --host "$ADDR" --port "$PUBLIC" --path /version \
    --rate 500 --seconds "$DURATION" --label "front, 500 req/s, new connections"
python3 tests/bench/loadgen.py --host "$ADDR" --port "$PRIVATE" --path /version \
    --rate 500 --seconds "$DURATION" --label "direct, 500 req/s, new connections"

# Failed requests through the front while the app is deployed (blue-green:
# a new set of instances gated, the front moved over, the old set drained),
# at RATES requests per second on new connections.
project=$(mktemp -d)
trap '"$HOSTCTL" sandbox down --name "$BENCH_NAME" >/dev/null 2>&1 || true; rm -rf "$project"' EXIT
cp "/var/lib/hostctl/sandbox/$BENCH_NAME/hostctl.toml" "$project/hostctl.toml"
printf '[services.bench]\nartifact = "dist"\n' >>"$project/hostctl.toml"
n=0
for rate in ${RATES:-500 2000}; do
    n=$((n + 1))
    rm -rf "$project/dist"
    mkdir -p "$project/dist/bin"
    cp target/debug/demo-backend "$project/dist/bin/api"
    echo "d$n" >"$project/dist/VERSION"
    # Load from 1 s before the deploy until after it.
    python3 tests/bench/loadgen.py --host "$ADDR" --port "$PUBLIC" --path /version \
        --rate "$rate" --seconds 12 --label "front, $rate req/s on new connections, during a deploy" &
    load=$!
    sleep 1
    (cd "$project" && "$OLDPWD/$HOSTCTL" deploy bench --no-build --version "d$n" --json >"$project/out.json") ||
        { cat "$project/out.json" >&2; exit 1; }
    wait "$load"
done
