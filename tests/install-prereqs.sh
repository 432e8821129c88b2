#!/bin/bash
# Install what the sandbox tests need on a fresh Debian 12 / Ubuntu host.
# Run as root. Idempotent: installs only what is missing, and runs
# `apt-get update` at most once.
set -euo pipefail

packages=(
    debootstrap      # builds the sandbox root filesystem
    systemd-container # systemd-nspawn boots it
    openssh-client   # ssh, ssh-keygen
    iproute2         # ip netns / bridge / veth
    python3          # the AWS stand-in (moto) ...
    python3-venv     # ... in its own venv
    restic           # independent check of backup repositories
    packer           # the AMI template: fmt, validate, and its null source against a sandbox
    curl
    ca-certificates
)

if [[ $(id -u) -ne 0 ]]; then
    echo "install-prereqs: must run as root" >&2
    exit 1
fi

missing=()
for p in "${packages[@]}"; do
    if [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true) != installed ]]; then
        missing+=("$p")
    fi
done

# The Next.js trial builds its app with npm: the machine's own Node.js and
# npm when it has them (as from NodeSource, which Debian's npm conflicts
# with), else Debian's.
if ! command -v npm >/dev/null; then
    missing+=(nodejs npm)
fi

if ((${#missing[@]} == 0)); then
    echo "install-prereqs: all present" >&2
    exit 0
fi

echo "install-prereqs: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -q -y --no-install-recommends "${missing[@]}"
