#!/usr/bin/env bash
# What a redeploy uploads when little changed (issue 18, point 7): the
# Next.js app of tests/apps/nextjs built with `output: "standalone"`, with
# this machine's node binary bundled in the artifact (as users ship it),
# deployed to a sandbox as a port-mode service; then one page's text
# changed, `next build` run again, and deployed again. Prints the artifact's
# size and, for each deploy, the bytes hostctl uploaded and its wall time
# (release hostctl). Needs node and npm (tests/install-prereqs.sh). Not
# part of CI (tests/bench/README).
source "$(dirname "$0")/common.sh"
cargo build --release -p hostctl >&2
DEPLOY_HOSTCTL=$PWD/target/release/hostctl
NODE=$(readlink -f "$(command -v node)")
boot bdelta

work=$(mktemp -d)
trap '"$HOSTCTL" sandbox down --name "$BENCH_NAME" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
in_sandbox sh -c "cat >> /etc/hostd/hostd.toml <<'EOF'

[services.next]
command = \"node/bin/node server.js\"
port = 3100
health_path = \"/api/health\"
health_timeout = \"60s\"
jit = true
environment = { HOSTNAME = \"127.0.0.1\", NEXT_TELEMETRY_DISABLED = \"1\" }
release_dir = \"/srv/next\"
EOF
systemctl restart hostd"
answers "http://$ADDR:7780/health"

cp -r tests/apps/nextjs/. "$work/app"
cp "/var/lib/hostctl/sandbox/$BENCH_NAME/hostctl.toml" "$work/hostctl.toml"
cat >>"$work/hostctl.toml" <<'EOF'
[services.next]
artifact = "dist"
health_timeout = "60s"
EOF

stage() { # VERSION: next build, then dist/ = standalone + static + node
    (cd "$work/app" && NEXT_TELEMETRY_DISABLED=1 npm ci --no-audit --no-fund --loglevel=error >&2 &&
        NEXT_TELEMETRY_DISABLED=1 npm run build >&2)
    rm -rf "$work/dist"
    cp -r "$work/app/.next/standalone" "$work/dist"
    cp -r "$work/app/.next/static" "$work/dist/.next/static"
    install -D -m 0755 "$NODE" "$work/dist/node/bin/node"
    echo "$1" >"$work/dist/VERSION"
}

deploy() { # VERSION -> prints "seconds uploaded_bytes"
    local t0 t1
    t0=$(date +%s.%N)
    (cd "$work" && "$DEPLOY_HOSTCTL" deploy next --no-build --version "$1" --json >"$work/out.json") ||
        { cat "$work/out.json" >&2; exit 1; }
    t1=$(date +%s.%N)
    python3 -c 'import json,sys; r = json.load(open(sys.argv[1]))[0]; print(round(float(sys.argv[2]), 2), r.get("uploaded_bytes", 0))' \
        "$work/out.json" "$(python3 -c "print($t1 - $t0)")"
}

stage n1
size=$(du -sb "$work/dist" | cut -f1)
read -r first_s first_b < <(deploy n1)
sed -i 's/A Next.js app deployed by hostd/A Next.js app deployed by hostd, one page changed/' "$work/app/app/page.js"
stage n2
read -r second_s second_b < <(deploy n2)
curl -fs -m 5 "http://$ADDR:3100/" | grep -q "one page changed" ||
    { echo "the changed page is not served" >&2; exit 1; }
awk -v size="$size" -v fs="$first_s" -v fb="$first_b" -v ss="$second_s" -v sb="$second_b" 'BEGIN {
    printf "Next.js artifact of %.0f MB (node bundled): first deploy uploaded %.1f MiB in %s s; one page changed and rebuilt: uploaded %.2f MiB in %s s (%.1f%% of the first)\n",
        size / 1e6, fb / 1048576, fs, sb / 1048576, ss, sb / fb * 100
}'
