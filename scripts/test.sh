#!/bin/sh
# The whole test suite: unit tests beside the code and end-to-end tests that
# start real components (bubblewrap sandboxes with cgroup limits, git daemon
# on 127.0.0.1). Installs what it needs first.
#
# It runs from a fresh clone of this checkout (with your uncommitted and new files laid over
# it) in an empty private directory, so nothing beside the repository can be read: a test
# that only passes because of a file outside the repository fails here, not in a user's
# clone. The build is shared with the checkout's own target directory (CARGO_TARGET_DIR,
# default ./target) and fuzz/target, so a second run rebuilds only Airlock's own crates.
set -eu
cd "$(dirname "$0")/.."
sh scripts/install-deps.sh

if [ -z "${AIRLOCK_TEST_CLONE:-}" ]; then
    ROOT=$PWD
    # Any file that points at a path above the repository root fails here, named.
    cargo run -q -p airlock-tests --bin check-repo-paths -- "$ROOT"

    # Always the same path: cargo keys a crate's build by its source path, so a new temporary
    # name on every run left a full set of Airlock's artifacts behind each time (the shared
    # target directory grew by gigabytes per run; 71 GB here before this). Private to this user;
    # two runs at once by one user would share it.
    PARENT="${TMPDIR:-/tmp}/airlock-test-clone-$(id -u)"
    rm -rf "$PARENT"
    mkdir -m 700 "$PARENT"
    trap 'rm -rf "$PARENT"' EXIT
    trap 'exit 130' INT TERM
    CLONE="$PARENT/airlock"
    git clone -q "$ROOT" "$CLONE"
    # The work tree as it is: tracked changes (staged or not, deletions too) and new files.
    git -C "$ROOT" diff --binary HEAD >"$PARENT/work-tree.patch"
    if [ -s "$PARENT/work-tree.patch" ]; then
        git -C "$CLONE" apply --binary "$PARENT/work-tree.patch"
    fi
    rm -f "$PARENT/work-tree.patch"
    git -C "$ROOT" ls-files -z --others --exclude-standard |
        (cd "$ROOT" && tar --null -T - -cf -) | tar -C "$CLONE" -xf -
    echo "test: running from a clean clone in $CLONE (nothing beside it)"

    rc=0
    AIRLOCK_TEST_CLONE=1 \
        CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}" \
        FUZZ_TARGET_DIR="${FUZZ_TARGET_DIR:-$ROOT/fuzz/target}" \
        FUZZ_CORPUS_DIR="${FUZZ_CORPUS_DIR:-$ROOT/fuzz/corpus}" \
        FUZZ_ARTIFACTS_DIR="${FUZZ_ARTIFACTS_DIR:-$ROOT/fuzz/artifacts}" \
        sh "$CLONE/scripts/test.sh" "$@" || rc=$?
    exit "$rc"
fi

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
