#!/bin/sh
# Fuzzes the host-side code that handles trees a commit or a job controls (issue 11): tree
# materialisation (Mirror::materialise), output collection (outputs::collect,
# ContentStore::put/copy_out, TreeRoot::copy_into), image manifest and config parsing
# (image::manifest, issue 19) and image layer unpacking (image::unpack::apply_layer).
# Targets are in fuzz/fuzz_targets/.
#
#   sh scripts/fuzz.sh [SECONDS]     # SECONDS per target, default 20
#
# Runs on the stable toolchain: cargo-fuzz needs a few unstable rustc flags (the address
# sanitizer), which RUSTC_BOOTSTRAP=1 allows. Builds go to fuzz/target (or $FUZZ_TARGET_DIR),
# never to the workspace's target directory. Exits non-zero if any target crashes, panics,
# hangs (FIFOs) or runs out of memory; the input that did it is kept in fuzz/artifacts/TARGET/
# ($FUZZ_ARTIFACTS_DIR/TARGET/ when set) and can be replayed with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -a -s none --codegen-units 16 TARGET fuzz/artifacts/TARGET/FILE`.
set -eu
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET="${1:-20}"
TARGETS="collect_outputs materialise_tree image_manifest unpack_layer"

case "$SECONDS_PER_TARGET" in
    '' | *[!0-9]*) echo "usage: sh scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
# libFuzzer itself is C++, built by libfuzzer-sys.
if ! command -v c++ >/dev/null 2>&1; then
    echo "fuzz: installing g++ (libFuzzer is C++)" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq g++ >/dev/null
fi

export RUSTC_BOOTSTRAP=1
# The cheapest build that still catches what these targets were written for. Their bugs are
# logic bugs in safe Rust (a write outside the tree, a followed link, a panic, a hang), which
# the targets' own checks, debug assertions and overflow checks catch; all of Airlock is
# `forbid(unsafe_code)`, so the address sanitizer (cargo-fuzz's default) adds build time and
# finds nothing ours. Optimised, but in 16 codegen units instead of cargo-fuzz's default 1:
# the build is a few minutes instead of a quarter of an hour, the runs barely slower. Coverage
# instrumentation (what guides the fuzzer) and compare tracing stay on. Keep these flags
# identical for build and run, or run rebuilds. fuzz/README.md has the figures.
BUILD_FLAGS="--release --debug-assertions --sanitizer none --codegen-units 16"
if [ -n "${FUZZ_TARGET_DIR:-}" ]; then
    BUILD_FLAGS="$BUILD_FLAGS --target-dir $FUZZ_TARGET_DIR"
fi

# The targets' scratch trees (a base directory per process, kept until the process ends) go to
# a private temporary directory, removed afterwards. On tmpfs when there is one: the content
# store fsyncs every blob, which on a disk takes most of an iteration's time.
scratch_parent="${TMPDIR:-/tmp}"
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
    scratch_parent=/dev/shm
fi
SCRATCH="$(mktemp -d "$scratch_parent/airlock-fuzz.XXXXXX")"
trap 'rm -rf "$SCRATCH"' EXIT INT TERM

start=$(date +%s)
# shellcheck disable=SC2086
cargo fuzz build $BUILD_FLAGS
echo "fuzz: built in $(($(date +%s) - start)) s"

failed=""
# Corpora and crashing inputs may live outside this checkout (scripts/test.sh runs in a clone
# that is removed afterwards, and keeps them in the original checkout).
CORPUS_DIR="${FUZZ_CORPUS_DIR:-$PWD/fuzz/corpus}"
ARTIFACTS_DIR="${FUZZ_ARTIFACTS_DIR:-$PWD/fuzz/artifacts}"
for target in $TARGETS; do
    corpus="$CORPUS_DIR/$target"
    artifacts="$ARTIFACTS_DIR/$target"
    mkdir -p "$corpus" "$artifacts" "$SCRATCH/$target"
    log="$SCRATCH/$target.log"
    seeds=""
    [ -d "fuzz/seeds/$target" ] && seeds="fuzz/seeds/$target"
    before=$(find "$artifacts" -type f | wc -l)
    rc=0
    # -timeout: an input that takes 10 s is a hang (a FIFO opened for reading, say).
    # -len_control=0: inputs of any size up to -max_len from the start; a short run otherwise
    # spends its time on tiny trees with no pattern.
    # shellcheck disable=SC2086
    TMPDIR="$SCRATCH/$target" cargo fuzz run $BUILD_FLAGS "$target" "$corpus" $seeds -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$artifacts/" \
        -len_control=0 -max_len=1024 -print_final_stats=1 \
        >"$log" 2>&1 || rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *\([0-9]*\).*/\1/p' "$log" | tail -n 1)
    after=$(find "$artifacts" -type f | wc -l)
    crashes=$((after - before))
    if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes=1
    fi
    if [ "$crashes" -ne 0 ]; then
        # The panic or sanitizer report (not its backtrace), then cargo-fuzz's account of the
        # failing input (its path and its Debug form); the whole log otherwise.
        {
            sed -n '/panicked at/,+3p' "$log" | head -n 20
            sed -n '/ERROR: libFuzzer\|ERROR: [A-Za-z]*Sanitizer/,+16p' "$log" | head -n 40
            sed -n '/^Failing input:/,$p' "$log" | head -n 80
        } >"$log.summary"
        if [ -s "$log.summary" ]; then cat "$log.summary" >&2; else cat "$log" >&2; fi
        failed="$failed $target"
        echo "fuzz: $target: ${runs:-?} runs, $crashes crashes (exit $rc; inputs in $artifacts/)"
    else
        echo "fuzz: $target: ${runs:-0} runs, 0 crashes"
    fi
done

if [ -n "$failed" ]; then
    echo "fuzz: FAILED:$failed" >&2
    exit 1
fi
