#!/bin/bash
# Provision a host for hostd. The same script runs on EC2 (Packer) and in the
# local sandbox (hostctl sandbox up, through chroot).
#
# Usage: provision.sh STAGING_DIR      (as root on the target)
#
# STAGING_DIR holds:
#   api/         optional: an initial API release (bin/api inside)
#   hostd        the hostd binary
#   units/       systemd units to install into /etc/systemd/system/
#   hostd.toml   default configuration (installed only if none exists)
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
[[ -r /etc/os-release ]] || die "/etc/os-release is missing: cannot detect the distribution"

operator=${HOSTD_OPERATOR_USER:-admin}
[[ $operator =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || die "invalid HOSTD_OPERATOR_USER: $operator"

# shellcheck disable=SC1091
. /etc/os-release

# --- Packages and unit names: one branch per distribution family ----------
case "${ID:-}" in
debian | ubuntu)
    packages=(postgresql redis-server openssh-server)
    units=(hostd.service ssh.service postgresql.service redis-server.service api.socket)
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
    ;;
amzn)
    packages=(postgresql15-server redis6 openssh-server)
    units=(hostd.service sshd.service postgresql.service redis6.service api.socket)
    missing=()
    for p in "${packages[@]}"; do
        rpm -q "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        log "installing ${missing[*]}"
        dnf install -y "${missing[@]}"
    fi
    if [[ ! -f /var/lib/pgsql/data/PG_VERSION ]]; then
        log "initialising the PostgreSQL cluster"
        postgresql-setup --initdb
    fi
    pg_conf_dirs=(/var/lib/pgsql/data)
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
install -m 0755 -o root -g root "$staging/hostd" /usr/local/bin/hostd
for unit in "$staging"/units/*; do
    [[ -f $unit ]] || continue
    install -m 0644 -o root -g root "$unit" "/etc/systemd/system/$(basename "$unit")"
done
if [[ ! -e /etc/hostd/hostd.toml ]]; then
    install -m 0640 -o root -g hostd "$staging/hostd.toml" /etc/hostd/hostd.toml
else
    log "keeping existing /etc/hostd/hostd.toml"
fi

# --- PostgreSQL: hostd (root) acts as the postgres superuser ----------------
# Through peer authentication with a map, so no password exists for it; the
# default `local all postgres peer` line gains `map=hostd`.
for dir in "${pg_conf_dirs[@]}"; do
    [[ -f $dir/pg_hba.conf ]] || die "no pg_hba.conf in $dir"
    grep -Eq '^hostd[[:space:]]+root[[:space:]]+postgres' "$dir/pg_ident.conf" ||
        printf 'hostd root postgres\nhostd postgres postgres\n' >>"$dir/pg_ident.conf"
    sed -i -E 's/^(local[[:space:]]+all[[:space:]]+postgres[[:space:]]+peer)[[:space:]]*$/\1 map=hostd/' "$dir/pg_hba.conf"
    grep -Eq '^local[[:space:]]+all[[:space:]]+postgres[[:space:]]+peer[[:space:]]+map=hostd' "$dir/pg_hba.conf" ||
        die "$dir/pg_hba.conf has no 'local all postgres peer' line to extend"
done

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
