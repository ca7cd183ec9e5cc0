#!/usr/bin/env bash
# Installs the system packages blackbox builds against (Debian/Ubuntu):
# libclang-dev for bindgen, librocksdb-dev so RocksDB is linked rather than built from source,
# g++ for libbitcoinconsensus (Bitcoin Core's consensus code, built by the bitcoinconsensus crate).
set -euo pipefail
pkgs=(libclang-dev librocksdb-dev pkg-config g++)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
