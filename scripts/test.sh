#!/bin/sh
# The whole test suite: unit tests beside the code and end-to-end tests that
# start real components (bubblewrap sandboxes with cgroup limits, git daemon
# on 127.0.0.1). Installs what it needs first.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh

# Lints are part of the tests: clippy's disallowed_methods keeps plain path calls out of the
# modules that handle untrusted trees (clippy.toml), so a new call site cannot forget TreeRoot.
cargo fmt --all --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

# Fuzz tree materialisation, output collection and image layer unpacking for a bounded time
# (fuzz/README.md).
sh scripts/fuzz.sh 20

if cargo nextest --version >/dev/null 2>&1; then
    # One process per test: memory and process-table assertions stay honest.
    exec cargo nextest run --workspace --no-fail-fast
else
    exec cargo test --workspace --no-fail-fast
fi
