#!/usr/bin/env bash
# Installs what is needed, builds blackbox, starts a local 10-node network (with its own bitcoin
# chain), stores a 64 MiB random file (paying the nodes through channels), reads it back, checks
# the bytes, audits the shares, stores it again by path in a directory, lists and reads it back,
# stores and reads it once more with `aws s3` through the S3 gateway, shows the wallet, and stops
# the network.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
cargo build --release -p blackbox-cli
bin=$PWD/target/release/blackbox
work=$(mktemp -d)
gateway=
trap 'kill $gateway 2>/dev/null; kill -TERM $devnet 2>/dev/null; wait $devnet 2>/dev/null; rm -rf "$work"' EXIT
"$bin" devnet up --nodes 10 --dir "$work/net" > "$work/devnet.out" 2> "$work/devnet.log" &
devnet=$!
for _ in $(seq 600); do grep -q "devnet ready" "$work/devnet.out" && break; sleep 0.1; done
grep -q "devnet ready" "$work/devnet.out" || { cat "$work/devnet.log"; exit 1; }
export BLACKBOX_CONFIG=$work/net/client.toml
"$bin" nodes
head -c $((64 << 20)) /dev/urandom > "$work/file"
cap=$("$bin" put "$work/file")
echo "stored; read cap: $cap"
"$bin" get "$cap" -o "$work/file.back"
cmp "$work/file" "$work/file.back"
"$bin" check "$cap" | tail -n 2
"$bin" audit "$cap" | tail -n 1
"$bin" mkdir -p /photos/2026
"$bin" put "$work/file" /photos/2026/big.bin > /dev/null
echo "a note" | "$bin" put - /photos/2026/note.txt > /dev/null
"$bin" ls -l /photos/2026
"$bin" get /photos/2026/big.bin -o "$work/file.path"
cmp "$work/file" "$work/file.path"
"$bin" check --recursive / | tail -n 1
# A job near the data: a WebAssembly word count, run on a provider's node, paid per fuel.
awk 'BEGIN { for (i = 0; i < 100000; i++) print "the quick brown fox jumps over the lazy dog" }' | "$bin" put - /words.txt > /dev/null
words=$("$bin" job run compute/jobs/wordcount.wat --input /words.txt --arg words.txt)
[ "$words" = 900000 ] || { echo "word count job returned '$words'"; exit 1; }
echo "word count job: $words words"
# The S3 gateway with a stock client: aws s3 (installed into .venv by setup.sh).
"$bin" gateway --config "$work/net/gateway.toml" > "$work/gateway.out" 2> "$work/gateway.log" &
gateway=$!
for _ in $(seq 300); do grep -q listening "$work/gateway.out" && break; sleep 0.1; done
endpoint=$(grep -o 'http://[0-9.:]*' "$work/gateway.out")
AWS_ACCESS_KEY_ID=$(sed -n 's/^access_key_id = "\(.*\)"$/\1/p' "$work/net/gateway.toml" | head -n 1)
AWS_SECRET_ACCESS_KEY=$(sed -n 's/^secret_access_key = "\(.*\)"$/\1/p' "$work/net/gateway.toml" | head -n 1)
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
aws() { .venv/bin/aws --endpoint-url "$endpoint" "$@"; }
aws s3 mb s3://photos
aws s3 cp --only-show-errors "$work/file" s3://photos/big.bin
aws s3 ls s3://photos
aws s3 cp --only-show-errors s3://photos/big.bin "$work/file.s3"
cmp "$work/file" "$work/file.s3"
"$bin" ls -l /s3/photos
"$bin" wallet
echo "round trip OK: 64 MiB stored on 10 nodes (3-of-10), paid for, audited and read back identically (CLI, paths, S3), and a paid word-count job"
