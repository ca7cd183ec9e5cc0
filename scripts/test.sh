#!/usr/bin/env bash
# The whole test suite: system packages, formatting, unit, property and multi-process tests.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo fmt --all -- --check
cargo test --workspace
