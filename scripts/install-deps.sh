#!/bin/sh
# Installs what Airlock's demo and tests need on Debian. Idempotent: it asks
# apt only for packages that are missing, so a second run touches nothing.
set -eu

PACKAGES="bubblewrap git python3 e2fsprogs mount gcc libc6-dev binutils util-linux tar gzip coreutils ca-certificates curl jq chromium chromium-driver docker-registry openssl podman runc skopeo busybox-static"

missing=""
for pkg in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $pkg"
    fi
done

if [ -n "$missing" ]; then
    echo "airlock: installing:$missing" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "airlock: cargo not found; install a Rust toolchain (rustup, stable >= 1.90) first" >&2
    exit 1
fi
