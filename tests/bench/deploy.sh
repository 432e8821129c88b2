#!/usr/bin/env bash
# Deploy speed and zero downtime, on a sandbox with release hostd:
#  1. `hostctl deploy` of a 20 MB artifact (the release demo API padded with
#     incompressible bytes) until every instance is healthy on it: the first
#     deploy (upload) and the same artifact again under a new version
#     (upload skipped), and with one file changed (only the chunks the host
#     lacks uploaded). Targets: < 3 s and < 1.5 s, build excluded.
#  2. Failed requests at 500 requests/s to the API's port while a new
#     release goes live, with 1 instance and with 3. Target: 0.
# Not part of CI (tests/bench/README).
source "$(dirname "$0")/common.sh"
# hostctl packs (tar, sha256, zstd) on the operator's machine: a release
# build, as operators run it (a debug build spends about 1 s more on 20 MB).
cargo build --release -p demo-backend -p hostctl >&2
DEPLOY_HOSTCTL=target/release/hostctl
SIZE=${SIZE:-20000000}
RATE=${RATE:-500}
boot bdep

project=$(mktemp -d)
trap '"$HOSTCTL" sandbox down --name "$BENCH_NAME" >/dev/null 2>&1 || true; rm -rf "$project"' EXIT
cp "/var/lib/hostctl/sandbox/$BENCH_NAME/hostctl.toml" "$project/hostctl.toml"
cat >>"$project/hostctl.toml" <<'EOF'
[services.backend]
artifact = "dist"
unit = "api@.service"
EOF

stage() { # VERSION: dist/ = release API + VERSION + padding to SIZE bytes
    rm -rf "$project/dist"
    mkdir -p "$project/dist/bin" "$project/dist/assets"
    cp target/release/demo-backend "$project/dist/bin/api"
    echo "$1" >"$project/dist/VERSION"
    local pad=$((SIZE - $(stat -c %s target/release/demo-backend)))
    ((pad > 0)) && head -c "$pad" /dev/urandom >"$project/dist/assets/blob"
    true
}

deploy() { # VERSION -> prints seconds; fails unless every host is ok
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$project" && "$OLDPWD/$DEPLOY_HOSTCTL" deploy backend --no-build --version "$1" --json >"$project/out.json") ||
        { cat "$project/out.json" >&2; exit 1; }
    t1=$(date +%s.%N)
    python3 -c "print(round($t1 - $t0, 2))"
}

stage b1
first=$(deploy b1)
uploaded=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0].get("uploaded_bytes", 0))' "$project/out.json")
repeat=$(deploy b2)
again=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0].get("uploaded_bytes", 0))' "$project/out.json")
echo "b2.1, one file changed" >"$project/dist/VERSION"
changed=$(deploy b2.1)
delta=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0].get("uploaded_bytes", 0))' "$project/out.json")
echo "deploy of a $((SIZE / 1000000)) MB artifact to healthy: first ${first} s (uploaded ${uploaded} bytes), same artifact again ${repeat} s (uploaded ${again} bytes), one file changed ${changed} s (uploaded ${delta} bytes)"

under_load() { # INSTANCES VERSION
    (cd "$project" && "$OLDPWD/$HOSTCTL" scale "api=$1" >/dev/null)
    stage "$2"
    # Load from 1 s before the deploy until 2 s after it.
    python3 tests/bench/loadgen.py --host "$ADDR" --port 8080 --path /version \
        --rate "$RATE" --seconds 12 --label "requests during a deploy with $1 instance(s)" &
    local load=$!
    sleep 1
    deploy "$2" >/dev/null
    wait "$load"
}
under_load 1 b3
under_load 3 b4
