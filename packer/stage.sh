#!/bin/bash
# Assemble the staging directory hostd.pkr.hcl uploads and provision.sh
# reads: the hostd build (hostd and, beside it, hostd-front), units/, the
# default hostd.toml, provision.sh, prepare-data, and optionally an initial
# API release baked into the image.
#
# Usage: packer/stage.sh OUT_DIR HOSTD_BINARY [API_BINARY]
#
# OUT_DIR is replaced. HOSTD_BINARY must be built for the image's
# architecture (arm64 for Graviton); `cargo build --release -p hostd` puts
# hostd-front beside it. API_BINARY, if given, becomes
# releases/initial/bin/api; without it the first `hostctl deploy` brings
# the API.
set -euo pipefail

die() { printf 'stage: error: %s\n' "$*" >&2; exit 1; }

[[ $# -eq 2 || $# -eq 3 ]] || die "usage: $0 OUT_DIR HOSTD_BINARY [API_BINARY]"
out=$1
hostd=$2
api=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")

front=$(dirname "$hostd")/hostd-front
[[ -f $hostd && -x $hostd ]] || die "$hostd is not an executable file"
[[ -f $front && -x $front ]] || die "$front (hostd's front, built with it by cargo build -p hostd) is not an executable file"
[[ -z $api || (-f $api && -x $api) ]] || die "$api is not an executable file"

rm -rf "$out.tmp"
mkdir -p "$out.tmp/units"
install -m 0755 "$hostd" "$out.tmp/hostd"
install -m 0755 "$front" "$out.tmp/hostd-front"
install -m 0755 "$here/provision.sh" "$out.tmp/provision.sh"
install -m 0755 "$here/files/prepare-data" "$out.tmp/prepare-data"
install -m 0644 "$here/files/hostd.toml" "$out.tmp/hostd.toml"
# Units at the top of units/, drop-ins for distribution units one level down.
(cd "$repo/units" && find . -type f \( -name '*.service' -o -name '*.socket' -o -name '*.timer' -o -name '*.conf' \) -print0 |
    xargs -0 -I{} install -D -m 0644 {} "$out.tmp/units/{}")
if [[ -n $api ]]; then
    install -D -m 0755 "$api" "$out.tmp/api/bin/api"
fi
rm -rf "$out"
mv "$out.tmp" "$out"
printf 'stage: %s ready\n' "$out" >&2
