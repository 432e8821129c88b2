#!/usr/bin/env bash
# hostd's backup and restore of a >= 1 GB PostgreSQL database against the
# stock restic CLI doing the same by hand, both to the same S3 endpoint (the
# AWS stand-in), in one run on one sandbox:
#   backup:  `hostctl backup now --wait`  vs  `pg_dump -Fc -Z0 | restic backup --stdin`
#            first and incremental run (1 % rows appended, 0.1 % of the
#            oldest deleted, as an events table grows); wall time and
#            bytes stored in the bucket under each repository's prefix.
#   restore: `hostctl restore latest --only postgres --yes` (end to end: API
#            stopped, staging database, swap, API started healthy)
#            vs  `createdb && restic dump latest /api.dump | pg_restore`.
# Targets: backup time ratio <= 1.0 and bytes <= restic's; restore <= 1.1x.
# Both repositories are initialised and hold a small first snapshot before
# timing starts, so neither run pays for `init` or hostd's first `check`.
# ROWS (default 6 000 000) sizes the database. Not part of CI.
source "$(dirname "$0")/common.sh"
ROWS=${ROWS:-6000000}
SANDBOX_DIR=${HOSTCTL_SANDBOX_DIR:-/var/lib/hostctl/sandbox}
PY=$SANDBOX_DIR/aws/venv/bin/python
MOTO=http://10.231.0.2:5000
BUCKET=hostd-sandbox
RESTIC_PREFIX=bench-restic
export AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox AWS_DEFAULT_REGION=us-east-1
boot bbackup

password=$("$PY" - <<EOF
import boto3
ssm = boto3.client("ssm", endpoint_url="$MOTO")
print(ssm.get_parameter(Name="/hostd/sandbox/backup_password", WithDecryption=True)["Parameter"]["Value"])
EOF
)
stored() { # PREFIX -> bytes of every object under it
    "$PY" - "$1" <<EOF
import sys, boto3
s3 = boto3.client("s3", endpoint_url="$MOTO")
total = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="$BUCKET", Prefix=sys.argv[1] + "/"):
    total += sum(o["Size"] for o in page.get("Contents", []))
print(total)
EOF
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
PSQL="psql -XAtq -h /run/postgresql -U postgres"
# restic is one static binary: the host's copy runs in the sandbox as is.
in_sandbox sh -c 'cat > /usr/local/bin/restic && chmod 0755 /usr/local/bin/restic' < "$(command -v restic)"
restic_in() { # ARGS... -> restic against the bench repository, in the sandbox
    in_sandbox env RESTIC_PASSWORD="$password" AWS_ACCESS_KEY_ID=sandbox \
        AWS_SECRET_ACCESS_KEY=sandbox AWS_DEFAULT_REGION=us-east-1 \
        RESTIC_REPOSITORY="s3:$MOTO/$BUCKET/$RESTIC_PREFIX" "$@"
}
restic_backup() {
    restic_in sh -c "pg_dump -h /run/postgresql -U postgres -Fc -Z0 api | restic backup --quiet --stdin --stdin-filename api.dump"
}
hostd_backup() {
    "$HOSTCTL" --config "$SANDBOX_DIR/bbackup/hostctl.toml" backup now --wait >/dev/null
}

hostname=$(in_sandbox hostname)
in_sandbox sh -c "cat >> /etc/hostd/hostd.toml <<'EOF'
[secrets]
path = \"/hostd/sandbox/\"
backup_password = \"backup_password\"
[backup]
bucket = \"$BUCKET\"
prefix = \"bench-hostd/{hostname}\"
redis = false
drill = false
EOF
systemctl restart hostd"
answers "http://$ADDR:7780/health"

echo "warming up: both repositories initialised with the small database" >&2
restic_in restic init --quiet >&2
restic_backup
hostd_backup

echo "loading $ROWS rows into the api database" >&2
in_sandbox $PSQL -d api -c "CREATE TABLE bench_events AS
    SELECT g AS id, timestamp '2026-01-01' + g * interval '1 second' AS at,
           md5(g::text) AS h, repeat(md5((g % 1000)::text), 4) AS payload
    FROM generate_series(1, $ROWS) g" >&2
# Settled before each timed pair: the first reader of fresh rows sets their
# hint bits (writing every page), which would slow whichever dump goes first.
settle() { in_sandbox $PSQL -d api -c "VACUUM (FREEZE, ANALYZE) bench_events" -c "CHECKPOINT" >&2; }
settle
db_bytes=$(in_sandbox $PSQL -d api -c "SELECT pg_database_size('api')")

measure() { # LABEL -> lines "LABEL hostd|restic SECONDS BYTES"
    local t0 t1 t2 t3
    t0=$(now); hostd_backup; t1=$(now)
    t2=$(now); restic_backup; t3=$(now)
    echo "$1 hostd $(elapsed "$t0" "$t1") $(stored "bench-hostd/$hostname")"
    echo "$1 restic $(elapsed "$t2" "$t3") $(stored "$RESTIC_PREFIX")"
}
first=$(measure first)
in_sandbox $PSQL -d api -c "INSERT INTO bench_events
    SELECT g, timestamp '2026-01-01' + g * interval '1 second', md5(g::text), repeat(md5((g % 1000)::text), 4)
    FROM generate_series($ROWS + 1, $ROWS + $ROWS / 100) g;
    DELETE FROM bench_events WHERE id <= $ROWS / 1000" >&2
settle
incremental=$(measure incremental)

hostd_restore() {
    "$HOSTCTL" --config "$SANDBOX_DIR/bbackup/hostctl.toml" restore latest --only postgres --yes >/dev/null
}
restic_restore() {
    restic_in sh -c "createdb -h /run/postgresql -U postgres bench_manual &&
        restic dump latest /api.dump | pg_restore -h /run/postgresql -U postgres --exit-on-error -d bench_manual"
}
# Restores vary run to run (page cache, checkpoints): RESTORES rounds, the
# order alternating, and the median of each.
restores=""
for round in $(seq "${RESTORES:-3}"); do
    order="hostd restic"
    [ $((round % 2)) = 0 ] && order="restic hostd"
    for who in $order; do
        in_sandbox $PSQL -d postgres -c "DROP DATABASE IF EXISTS bench_manual" >&2
        # The previous copy of the last hostd restore goes after it answers.
        for _ in $(seq 120); do
            [ -z "$(in_sandbox $PSQL -d postgres -c "SELECT 1 FROM pg_database WHERE datname LIKE 'hostd_pre_restore_%'")" ] && break
            sleep 1
        done
        t0=$(now); "${who}_restore"; t1=$(now)
        restores+="$who $(elapsed "$t0" "$t1")"$'\n'
    done
done
in_sandbox $PSQL -d postgres -c "DROP DATABASE IF EXISTS bench_manual" >&2

# HOSTD_JOURNAL=FILE keeps hostd's journal of the run, for where time went.
[ -z "${HOSTD_JOURNAL:-}" ] || in_sandbox journalctl -u hostd -o short-precise --no-pager > "$HOSTD_JOURNAL"
printf '%s\n%s\n' "$first" "$incremental" | awk -v db="$db_bytes" '
    { t[$1, $2] = $3; b[$1, $2] = $4 }
    END {
        printf "database %.2f GiB\n", db / 2^30
        for (i = 1; i <= 2; i++) {
            run = i == 1 ? "first" : "incremental"
            printf "backup %-11s hostd %6.1f s, restic %6.1f s, ratio %.2f (target <= 1.0); stored hostd %.0f MiB, restic %.0f MiB (cumulative; target hostd <= restic)\n",
                run, t[run, "hostd"], t[run, "restic"], t[run, "hostd"] / t[run, "restic"],
                b[run, "hostd"] / 2^20, b[run, "restic"] / 2^20
        }
    }'
printf '%s' "$restores" | sort -k1,1 -k2,2n | awk '
    { v[$1, ++n[$1]] = $2 }
    END {
        h = v["hostd", int((n["hostd"] + 1) / 2)]; r = v["restic", int((n["restic"] + 1) / 2)]
        printf "restore (median of %d): hostctl restore %.1f s, restic dump | pg_restore %.1f s, ratio %.2f (target <= 1.1)\n",
            n["hostd"], h, r, h / r
    }'
