#!/bin/bash
# Provision a host for hostd. The same script runs on EC2 (Packer) and in the
# local sandbox (hostctl sandbox up, through chroot).
#
# Usage: provision.sh STAGING_DIR      (as root on the target)
#
# STAGING_DIR holds:
#   api/         optional: an initial API release (bin/api inside)
#   hostd        the hostd binary
#   units/       systemd units to install into /etc/systemd/system/, and
#                drop-ins for distribution units in units/NAME.d/*.conf
#                (into /etc/systemd/system/NAME.d/)
#   hostd.toml   default configuration (installed only if none exists)
#   prepare-data prepares /data at every boot (hostd-data.service); run
#                here too, last
#
# Environment: HOSTD_OPERATOR_USER (default: admin), the operator account.
#
# Idempotent. It needs no network when the packages are already installed.
# It writes no secrets: hostd fetches them at run time.
set -euo pipefail

log() { printf 'provision: %s\n' "$*" >&2; }
die() { printf 'provision: error: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: $0 STAGING_DIR"
staging=$1
[[ $(id -u) -eq 0 ]] || die "must run as root"
[[ -f $staging/hostd ]] || die "$staging/hostd is missing"
[[ -d $staging/units ]] || die "$staging/units/ is missing"
[[ -f $staging/hostd.toml ]] || die "$staging/hostd.toml is missing"
[[ -f $staging/prepare-data ]] || die "$staging/prepare-data is missing"
[[ -r /etc/os-release ]] || die "/etc/os-release is missing: cannot detect the distribution"

operator=${HOSTD_OPERATOR_USER:-admin}
# What the apps run on (node, python3, gunicorn...): packer's
# runtime_packages, space-separated names of this distribution's packages.
read -r -a runtime <<<"${HOSTD_RUNTIME_PACKAGES:-}"
for p in "${runtime[@]}"; do
    [[ $p =~ ^[a-z0-9][a-z0-9.+-]*$ ]] || die "invalid runtime package name: $p"
done
[[ $operator =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid HOSTD_OPERATOR_USER: $operator"

# shellcheck disable=SC1091
. /etc/os-release

# --- Packages and unit names: one branch per distribution family ----------
case "${ID:-}" in
debian | ubuntu)
    packages=(postgresql redis-server openssh-server "${runtime[@]}")
    units=(hostd.service hostd-data.service ssh.service postgresql.service redis-server.service api.socket)
    missing=()
    for p in "${packages[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q
        apt-get install -q -y --no-install-recommends "${missing[@]}"
    fi
    pg_conf_dirs=(/etc/postgresql/*/main)
    redis_conf=/etc/redis/redis.conf
    ;;
amzn)
    packages=(postgresql15-server redis6 openssh-server "${runtime[@]}")
    units=(hostd.service hostd-data.service sshd.service postgresql.service redis6.service api.socket)
    missing=()
    for p in "${packages[@]}"; do
        rpm -q "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        dnf install -y "${missing[@]}"
    fi
    redis_conf=/etc/redis6/redis6.conf
    ;;
*)
    die "unsupported distribution '${ID:-unknown}' (supported: debian, ubuntu, amzn)"
    ;;
esac

# --- Groups and the operator account ---------------------------------------
getent group hostd >/dev/null || { log "creating group hostd"; groupadd --system hostd; }

if ! getent passwd "$operator" >/dev/null; then
    log "creating operator user $operator"
    useradd --create-home --shell /bin/bash "$operator"
    # No password at all ('*'): the only way in is an SSH key.
    usermod --password '*' "$operator"
fi
extra_groups=hostd
getent group systemd-journal >/dev/null && extra_groups+=,systemd-journal
usermod --append --groups "$extra_groups" "$operator"

# --- The API's account and release layout -------------------------------------
# /srv/api/releases/<version>/ holds releases; /srv/api/current links to the
# live one (deploys switch the link atomically).
getent group api >/dev/null || groupadd --system api
getent passwd api >/dev/null ||
    useradd --system --gid api --no-create-home --home-dir /srv/api --shell /usr/sbin/nologin api
install -d -m 0755 -o root -g root /srv/api /srv/api/releases
if [[ -d $staging/api ]]; then
    # An initial release (the sandbox ships the demo backend); EC2 images
    # get theirs from the first deploy.
    log "installing the initial API release"
    rm -rf /srv/api/releases/initial
    cp -a "$staging/api" /srv/api/releases/initial
    chown -R root:root /srv/api/releases/initial
    ln -sfn releases/initial /srv/api/current
fi

# --- Directories --------------------------------------------------------------
install -d -m 0755 -o root -g root /data
install -d -m 0700 -o root -g root /var/lib/hostd
install -d -m 0755 -o root -g root /etc/hostd

# --- hostd, its units and its configuration ----------------------------------
# The binaries (hostd and its front, hostd-front) live in a directory of
# their own, the one place hostd.service lets hostd write among programs:
# `hostctl upgrade-hostd` renames new builds over them there.
# /usr/local/bin/hostd (PATH, dial-stdio) and hostd-front link to them.
install -d -m 0755 -o root -g root /usr/local/lib/hostd /usr/local/lib/hostd/bin
for bin in hostd hostd-front; do
    install -m 0755 -o root -g root "$staging/$bin" "/usr/local/lib/hostd/bin/$bin"
    ln -sfn "../lib/hostd/bin/$bin" "/usr/local/bin/$bin"
done
install -m 0755 -o root -g root "$staging/prepare-data" /usr/local/lib/hostd/prepare-data
# Copies $1 to $2 (0644 root) unless $2 already has that content, so a second
# run leaves unit files alone (systemd sees no change on disk).
install_file() {
    cmp -s "$1" "$2" || install -m 0644 -o root -g root "$1" "$2"
}
# Our units at the top of units/; drop-ins for the distribution's units
# (redis-server.service.d/50-hostd.conf, ...) one level down.
for unit in "$staging"/units/*; do
    [[ -f $unit ]] || continue
    install_file "$unit" "/etc/systemd/system/$(basename "$unit")"
done
for dropin in "$staging"/units/*.d/*.conf; do
    [[ -f $dropin ]] || continue
    dir=/etc/systemd/system/$(basename "$(dirname "$dropin")")
    install -d -m 0755 -o root -g root "$dir"
    install_file "$dropin" "$dir/$(basename "$dropin")"
done
# hostd's own copy (units.source_dir): at every start hostd installs these
# into /etc/systemd/system when they differ and reloads systemd, so a new
# hostd build brings its units along without a new image.
for file in "$staging"/units/* "$staging"/units/*.d/*.conf; do
    [[ -f $file ]] || continue
    rel=${file#"$staging"/units/}
    install -d -m 0755 -o root -g root "/usr/local/lib/hostd/units/$(dirname "$rel")"
    install_file "$file" "/usr/local/lib/hostd/units/$rel"
done
if [[ ! -e /etc/hostd/hostd.toml ]]; then
    install -m 0640 -o root -g hostd "$staging/hostd.toml" /etc/hostd/hostd.toml
else
    log "keeping existing /etc/hostd/hostd.toml"
fi

# --- Data on /data: PostgreSQL's cluster and Redis's RDB/AOF -----------------
# /data is the EBS data volume on EC2 (a plain directory in the sandbox). The
# units wait for its mount with RequiresMountsFor=/data (units/*.d/ on Debian,
# the drop-in below on Amazon Linux). A cluster already in /data (PG_VERSION
# present) is kept as it is, never overwritten.
#
# On EC2 an empty, freshly mounted volume hides what this script puts in
# /data: at boot hostd-data.service runs prepare-data (before PostgreSQL and
# Redis), which creates the cluster there again when none is present.

# Moves the PostgreSQL cluster in $1 to $2 unless $2 already holds one. The
# server ($3) must not run meanwhile: in a chroot nothing runs; on a live
# host (Packer on EC2) it is stopped and started again afterwards. Copies to
# a temporary name beside $2 and renames it (so $2 never holds half a
# cluster; an interrupted run starts over), then removes $1.
move_cluster() {
    local src=$1 dst=$2 unit=$3 running=no
    if [[ -f $dst/PG_VERSION ]]; then
        [[ ! -e $src ]] || log "keeping the cluster in $dst; $src is left as it is"
        return 0
    fi
    [[ -f $src/PG_VERSION ]] || die "no PostgreSQL cluster in $src to move to $dst"
    if systemctl is-active --quiet "$unit" 2>/dev/null; then
        log "stopping $unit to move its data"
        systemctl stop "$unit"
        running=yes
    fi
    log "moving the PostgreSQL cluster from $src to $dst"
    install -d -m 0755 -o postgres -g postgres "$(dirname "$(dirname "$dst")")" "$(dirname "$dst")"
    rm -rf "$dst.tmp"
    cp -a "$src" "$dst.tmp" # keeps postgres:postgres and 0700
    sync
    # Fails (and stops provisioning) if $dst exists and is not empty.
    mv -T "$dst.tmp" "$dst"
    rm -rf "$src"
    pg_start_after_move+=("$running:$unit")
}
pg_start_after_move=()

case "$ID" in
debian | ubuntu)
    # Debian: the cluster created at package install (VERSION/main) moves
    # from /var/lib/postgresql/VERSION/main; data_directory in its
    # postgresql.conf (generated by pg_createcluster, not a dpkg conffile)
    # says where it is. units/postgresql@.service.d/ adds RequiresMountsFor.
    for dir in "${pg_conf_dirs[@]}"; do
        version=$(basename "$(dirname "$dir")")
        pg_data=/data/postgresql/$version/main
        move_cluster "/var/lib/postgresql/$version/main" "$pg_data" "postgresql@$version-main.service"
        conf=$dir/postgresql.conf
        line="data_directory = '$pg_data'"
        if ! grep -Fxq "$line" "$conf"; then
            sed -i -E "s|^#?data_directory[[:space:]]*=.*\$|$line|" "$conf"
            grep -Fxq "$line" "$conf" || die "cannot set data_directory in $conf"
        fi
    done
    # Redis: units/redis-server.service.d/ points it at /data/redis, which
    # prepare-data makes. Nothing to carry over from /var/lib/redis: the
    # image has no data yet.
    ;;
amzn)
    # Amazon Linux 2023 (not run by the project's tests: no AL2023 host
    # here). PostgreSQL keeps both data and configuration in PGDATA, which
    # postgresql.service sets (/var/lib/pgsql/data); a drop-in sets it to
    # /data instead. Same outcome as on Debian. (Redis, redis6.service,
    # still keeps its data in /var/lib/redis6 there.) SELinux is permissive
    # on AL2023 by default; enforcing would also need /data/postgresql
    # labelled postgresql_db_t (semanage fcontext + restorecon).
    pg_data=/data/postgresql/15/main
    if [[ ! -f $pg_data/PG_VERSION && ! -f /var/lib/pgsql/data/PG_VERSION ]]; then
        log "initialising the PostgreSQL cluster"
        postgresql-setup --initdb
    fi
    move_cluster /var/lib/pgsql/data "$pg_data" postgresql.service
    install -d -m 0755 -o root -g root /etc/systemd/system/postgresql.service.d
    cat >/etc/systemd/system/postgresql.service.d/50-hostd.conf.tmp <<CONF
# Installed by hostd's provision.sh: the cluster lives on the data volume.
[Unit]
RequiresMountsFor=/data
Wants=hostd-data.service
After=hostd-data.service

[Service]
Environment=PGDATA=$pg_data
CONF
    if cmp -s /etc/systemd/system/postgresql.service.d/50-hostd.conf.tmp /etc/systemd/system/postgresql.service.d/50-hostd.conf; then
        rm -f /etc/systemd/system/postgresql.service.d/50-hostd.conf.tmp
    else
        chmod 0644 /etc/systemd/system/postgresql.service.d/50-hostd.conf.tmp
        mv -f /etc/systemd/system/postgresql.service.d/50-hostd.conf.tmp /etc/systemd/system/postgresql.service.d/50-hostd.conf
    fi
    ;;
esac

# A server stopped for the move starts again on its new data directory.
for entry in "${pg_start_after_move[@]}"; do
    [[ $entry == yes:* ]] || continue
    systemctl daemon-reload
    systemctl start "${entry#yes:}"
done

# --- PostgreSQL's peer map for hostd, Redis's directory: prepare-data --------
# (the same step every boot runs; here the cluster exists, so it only checks
# the peer map and the directories).
/usr/local/lib/hostd/prepare-data

# --- Redis: the password hostd sets from secrets.redis_password -------------
# hostd writes `requirepass` into this file (0640 root:redis) and sets it live
# with CONFIG SET; Redis reads it when it starts. Empty until hostd has a
# password, so the include never fails.
auth=/etc/redis/hostd-auth.conf
install -d -m 0755 /etc/redis
[[ -e $auth ]] || install -m 0640 -o root -g redis /dev/null "$auth"
[[ -f $redis_conf ]] || die "no Redis configuration at $redis_conf"
grep -Fxq "include $auth" "$redis_conf" ||
    printf '\n# Added by hostd provisioning: requirepass from SSM (hostd writes it).\ninclude %s\n' "$auth" >>"$redis_conf"

# --- sshd hardening -------------------------------------------------------------
install -d -m 0755 /etc/ssh/sshd_config.d
cat >/etc/ssh/sshd_config.d/50-hostd.conf.tmp <<'CONF'
# Installed by hostd's provision.sh.
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
X11Forwarding no
CONF
chmod 0644 /etc/ssh/sshd_config.d/50-hostd.conf.tmp
mv -f /etc/ssh/sshd_config.d/50-hostd.conf.tmp /etc/ssh/sshd_config.d/50-hostd.conf
if ! grep -Eqs '^[[:space:]]*Include[[:space:]]+/etc/ssh/sshd_config\.d/' /etc/ssh/sshd_config; then
    die "/etc/ssh/sshd_config does not include /etc/ssh/sshd_config.d/*.conf; the hardening drop-in would be ignored"
fi

# --- Enable services (offline: only creates links, works in a chroot) --------
systemctl enable "${units[@]}"

log "done"
