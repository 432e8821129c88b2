#!/usr/bin/env bash
# hostd's backup and restore of a >= 1 GB PostgreSQL database against the
# stock restic CLI doing the same by hand, both to the same S3 endpoint (the
# AWS stand-in), and against the floor neither can beat, in one run on one
# sandbox:
#   floor:   `pg_dump -Fc -Z0 > /dev/null`, what every backup waits for.
#   backup:  `hostctl backup now --wait`  vs  `pg_dump -Fc -Z0 | restic backup --stdin`
#            first and incremental run (1 % rows appended, 0.1 % of the
#            oldest deleted, as an events table grows); wall time and
#            bytes stored in the bucket under each repository's prefix.
#   restore: `hostctl restore latest --only postgres --yes` (end to end: API
#            stopped, staging database, swap, API started healthy)
#            vs  `createdb && restic dump latest /api.dump | pg_restore`
#            and the floor: `createdb && pg_restore < api.dump` from a
#            local file (the same dump, fetched once before timing).
#   memory:  hostd's peak resident set (VmHWM) over the timed runs.
# Each pair runs ROUNDS times (default 3), the order alternating, each
# round's backups into repositories of their own (initialised, with a small
# first snapshot, before timing starts, so no run pays for `init` or
# hostd's first `check`); medians are printed with the min-max.
# Targets (issue 19): first and incremental backup <= 1.15x the floor and
# <= restic; bytes <= restic's; restore <= 0.8x restic's; hostd's peak
# <= 256 MiB. ROWS (default 6 000 000) sizes the database; the machine must
# be idle (IDLE_CHECK=0 skips the check). Not part of CI.
source "$(dirname "$0")/common.sh"
ROWS=${ROWS:-6000000}
ROUNDS=${ROUNDS:-3}
SANDBOX_DIR=${HOSTCTL_SANDBOX_DIR:-/var/lib/hostctl/sandbox}
PY=$SANDBOX_DIR/aws/venv/bin/python
MOTO=http://10.231.0.2:5000
BUCKET=hostd-sandbox
export AWS_ACCESS_KEY_ID=sandbox AWS_SECRET_ACCESS_KEY=sandbox AWS_DEFAULT_REGION=us-east-1
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- agent cli tests Cargo.toml Cargo.lock || commit="$commit with uncommitted changes"
require_idle
boot bbackup

password=$("$PY" - <<EOF
import boto3
ssm = boto3.client("ssm", endpoint_url="$MOTO")
print(ssm.get_parameter(Name="/hostd/sandbox/backup_password", WithDecryption=True)["Parameter"]["Value"])
EOF
)
stored() { # PREFIX -> bytes of every object under it; objects and MiB per kind (data, index...) on stderr, for where the bytes went
    "$PY" - "$1" <<EOF
import sys, boto3, collections
s3 = boto3.client("s3", endpoint_url="$MOTO")
kinds, counts = collections.Counter(), collections.Counter()
for page in s3.get_paginator("list_objects_v2").paginate(Bucket="$BUCKET", Prefix=sys.argv[1] + "/"):
    for o in page.get("Contents", []):
        kind = o["Key"][len(sys.argv[1]) + 1:].split("/")[0]
        kinds[kind] += o["Size"]
        counts[kind] += 1
print(sys.argv[1] + ": " + ", ".join(f"{k} {counts[k]} objects {kinds[k] / 2**20:.1f} MiB" for k in sorted(kinds)), file=sys.stderr)
print(sum(kinds.values()))
EOF
}
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { print b - a }'; }
PSQL="psql -XAtq -h /run/postgresql -U postgres"
# restic is one static binary: the host's copy runs in the sandbox as is.
in_sandbox sh -c 'cat > /usr/local/bin/restic && chmod 0755 /usr/local/bin/restic' < "$(command -v restic)"
hostname=$(in_sandbox hostname)
hostd_prefix() { echo "bench-hostd/r$1/$hostname"; }
restic_prefix() { echo "bench-restic/r$1"; }
restic_in() { # ROUND ARGS... -> restic against that round's repository, in the sandbox
    local round=$1
    shift
    in_sandbox env RESTIC_PASSWORD="$password" AWS_ACCESS_KEY_ID=sandbox \
        AWS_SECRET_ACCESS_KEY=sandbox AWS_DEFAULT_REGION=us-east-1 \
        RESTIC_REPOSITORY="s3:$MOTO/$BUCKET/$(restic_prefix "$round")" "$@"
}
restic_backup() { # ROUND
    restic_in "$1" sh -c "pg_dump -h /run/postgresql -U postgres -Fc -Z0 api | restic backup --quiet --stdin --stdin-filename api.dump"
}
hostd_backup() {
    "$HOSTCTL" --config "$SANDBOX_DIR/bbackup/hostctl.toml" backup now --wait >/dev/null
}
floor_dump() {
    in_sandbox sh -c "pg_dump -h /run/postgresql -U postgres -Fc -Z0 api > /dev/null"
}
hostd_round() { # ROUND: hostd backs up into that round's repository from now on
    in_sandbox sh -c "sed -i 's|^prefix = \"bench-hostd/.*|prefix = \"bench-hostd/r$1/{hostname}\"|' /etc/hostd/hostd.toml &&
        systemctl restart hostd"
    answers "http://$ADDR:7780/health"
}
declare -A peak_kib=([backup]=0 [restore]=0)
note_peak() { # backup|restore: hostd's VmHWM so far, kept when the highest
    local kib
    kib=$(in_sandbox sh -c 'awk "/^VmHWM/ {print \$2}" /proc/$(systemctl show -P MainPID hostd)/status')
    [ "$kib" -gt "${peak_kib[$1]}" ] && peak_kib[$1]=$kib
    return 0
}

in_sandbox sh -c "cat >> /etc/hostd/hostd.toml <<'EOF'
[secrets]
path = \"/hostd/sandbox/\"
backup_password = \"backup_password\"
[backup]
bucket = \"$BUCKET\"
prefix = \"bench-hostd/r1/{hostname}\"
redis = false
drill = false
EOF
systemctl restart hostd"
answers "http://$ADDR:7780/health"

echo "warming up: $ROUNDS repositories each, initialised with the small database" >&2
for round in $(seq "$ROUNDS"); do
    restic_in "$round" restic init --quiet >&2
    restic_backup "$round"
    hostd_round "$round"
    hostd_backup
done

echo "loading $ROWS rows into the api database" >&2
in_sandbox $PSQL -d api -c "CREATE TABLE bench_events AS
    SELECT g AS id, timestamp '2026-01-01' + g * interval '1 second' AS at,
           md5(g::text) AS h, repeat(md5((g % 1000)::text), 4) AS payload
    FROM generate_series(1, $ROWS) g" >&2
# Settled before each timed run: the first reader of fresh rows sets their
# hint bits (writing every page), which would slow whichever dump goes first.
settle() { in_sandbox $PSQL -d api -c "VACUUM (FREEZE, ANALYZE) bench_events" -c "CHECKPOINT" >&2; }
settle
db_bytes=$(in_sandbox $PSQL -d api -c "SELECT pg_database_size('api')")

results="" # lines "FIGURE WHO VALUE"
timed() { # FIGURE WHO COMMAND... -> appends the seconds taken to results
    local figure=$1 who=$2 t0 t1
    shift 2
    t0=$(now); "$@"; t1=$(now)
    results+="$figure $who $(elapsed "$t0" "$t1")"$'\n'
}
backups() { # RUN: one timed backup per round and tool, and the floor
    local round order who
    for round in $(seq "$ROUNDS"); do
        order="hostd restic floor"
        [ $((round % 2)) = 0 ] && order="floor restic hostd"
        for who in $order; do
            settle
            case $who in
                hostd) hostd_round "$round"; timed "$1" hostd hostd_backup; note_peak backup ;;
                restic) timed "$1" restic restic_backup "$round" ;;
                floor) timed "$1" floor floor_dump ;;
            esac
        done
        results+="stored-$1 hostd $(stored "$(hostd_prefix "$round")")"$'\n'
        results+="stored-$1 restic $(stored "$(restic_prefix "$round")")"$'\n'
    done
}
backups first
in_sandbox $PSQL -d api -c "INSERT INTO bench_events
    SELECT g, timestamp '2026-01-01' + g * interval '1 second', md5(g::text), repeat(md5((g % 1000)::text), 4)
    FROM generate_series($ROWS + 1, $ROWS + $ROWS / 100) g;
    DELETE FROM bench_events WHERE id <= $ROWS / 1000" >&2
backups incremental

hostd_restore() {
    "$HOSTCTL" --config "$SANDBOX_DIR/bbackup/hostctl.toml" restore latest --only postgres --yes >/dev/null
}
restic_restore() {
    restic_in "$ROUNDS" sh -c "createdb -h /run/postgresql -U postgres bench_manual &&
        restic dump latest /api.dump | pg_restore -h /run/postgresql -U postgres --exit-on-error -d bench_manual"
}
FLOOR_DUMP=/data/bench-floor.dump
floor_restore() {
    in_sandbox sh -c "createdb -h /run/postgresql -U postgres bench_manual &&
        pg_restore -h /run/postgresql -U postgres --exit-on-error -d bench_manual < $FLOOR_DUMP"
}
restic_in "$ROUNDS" sh -c "restic dump latest /api.dump > $FLOOR_DUMP"
# Both restore the same data: the last round's repositories, which hostd
# still backs up into. hostd starts afresh, so its peak memory is the
# restores' own.
hostd_round "$ROUNDS"
for round in $(seq "$ROUNDS"); do
    order="hostd restic floor"
    [ $((round % 2)) = 0 ] && order="floor restic hostd"
    for who in $order; do
        in_sandbox $PSQL -d postgres -c "DROP DATABASE IF EXISTS bench_manual" >&2
        # The previous copy of the last hostd restore goes after it answers.
        for _ in $(seq 120); do
            [ -z "$(in_sandbox $PSQL -d postgres -c "SELECT 1 FROM pg_database WHERE datname LIKE 'hostd_pre_restore_%'")" ] && break
            sleep 1
        done
        in_sandbox $PSQL -d postgres -c "CHECKPOINT" >&2
        timed restore "$who" "${who}_restore"
        [ "$who" = hostd ] && note_peak restore
    done
done
in_sandbox $PSQL -d postgres -c "DROP DATABASE IF EXISTS bench_manual" >&2
in_sandbox rm -f "$FLOOR_DUMP"

# HOSTD_JOURNAL=FILE keeps hostd's journal of the run, for where time went.
[ -z "${HOSTD_JOURNAL:-}" ] || in_sandbox journalctl -u hostd -o short-precise --no-pager > "$HOSTD_JOURNAL"
printf '%s' "$results" | sort -k1,1 -k2,2 -k3,3g | awk -v db="$db_bytes" -v commit="$commit" \
    -v rounds="$ROUNDS" -v peak_backup="${peak_kib[backup]}" -v peak_restore="${peak_kib[restore]}" '
    { n = ++count[$1, $2]; v[$1, $2, n] = $3 }
    function med(f, w) { return v[f, w, int((count[f, w] + 1) / 2)] }
    function lo(f, w) { return v[f, w, 1] }
    function hi(f, w) { return v[f, w, count[f, w]] }
    function secs(f, w) { return sprintf("%.1f s (%.1f-%.1f)", med(f, w), lo(f, w), hi(f, w)) }
    function mib(f, w) { return sprintf("%.0f MiB (%.0f-%.0f)", med(f, w) / 2^20, lo(f, w) / 2^20, hi(f, w) / 2^20) }
    END {
        printf "commit %s, database %.2f GiB, medians of %d rounds (min-max)\n", commit, db / 2^30, rounds
        for (i = 1; i <= 2; i++) {
            run = i == 1 ? "first" : "incremental"
            printf "backup %-11s hostd %s, restic %s, pg_dump floor %s; hostd/floor %.2f (target <= 1.15), hostd/restic %.2f (target <= 1.0)\n",
                run, secs(run, "hostd"), secs(run, "restic"), secs(run, "floor"),
                med(run, "hostd") / med(run, "floor"), med(run, "hostd") / med(run, "restic")
            printf "stored after %-11s hostd %s, restic %s; ratio %.2f (target <= 1.0)\n",
                run, mib("stored-" run, "hostd"), mib("stored-" run, "restic"),
                med("stored-" run, "hostd") / med("stored-" run, "restic")
        }
        printf "restore: hostctl restore %s, restic dump | pg_restore %s, pg_restore floor %s; hostd/restic %.2f (target <= 0.8), hostd/floor %.2f\n",
            secs("restore", "hostd"), secs("restore", "restic"), secs("restore", "floor"),
            med("restore", "hostd") / med("restore", "restic"), med("restore", "hostd") / med("restore", "floor")
        printf "restore rate: %.1f s per GiB of database (median hostd restore)\n", med("restore", "hostd") / (db / 2^30)
        printf "hostd peak resident memory: backups %.0f MiB, restores %.0f MiB (target <= 256)\n", peak_backup / 1024, peak_restore / 1024
    }'
