#!/bin/sh
# Airlock demo, foundation stage: a sample service (a small C program with
# tests and a test -> build -> publish pipeline) in a fresh Git repository,
# run by `ci-cluster run` in the same bubblewrap sandbox CI uses.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
sh scripts/install-deps.sh

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "building ci-cluster"
cargo build -q -p ci-cluster
CI="$ROOT/target/debug/ci-cluster"

DEMO=$(mktemp -d /var/tmp/airlock-demo-XXXXXX)
chmod 0711 "$DEMO"
REPO="$DEMO/greet"
mkdir -p "$REPO"
cp -R "$ROOT/demo/sample-service/." "$REPO/"
git -C "$REPO" init -q -b main
git -C "$REPO" add -A
git -C "$REPO" -c user.name="Dev Eloper" -c user.email=dev@example.org commit -q -m "greet: first version"

step "1. the sample service's pipeline file (.pipeline/config.yaml)"
sed 's/^/    /' "$REPO/.pipeline/config.yaml"

step "2. validate it"
"$CI" validate "$REPO/.pipeline/config.yaml"

step "3. run it as CI would for a push to main: test -> build -> publish, each in the sandbox"
"$CI" run --repo "$REPO" --event push --out "$DEMO/out" --report "$DEMO/report.json"

step "4. the outputs, content-addressed"
(cd "$DEMO/out" && sha256sum dist/greet dist/greet.tar.gz | sed 's/^/    /')
printf '    running it: '
"$DEMO/out/dist/greet" Airlock

step "5. a change that breaks a test: the run fails (exit 1) and shows the log"
sed -i 's/Hello, %s!/Howdy, %s!/' "$REPO/src/greet.c"
git -C "$REPO" -c user.name="Dev Eloper" -c user.email=dev@example.org commit -q -am "greet: say howdy"
if "$CI" run --repo "$REPO" --event change; then
    echo "unexpected: the broken change passed" >&2
    exit 1
else
    echo "    (exit status $?: as expected)"
fi

step "6. a malformed pipeline file: refused with file:line:col, nothing runs (exit 2)"
printf 'version: 1\njobs:\n  build:\n    run: make\n    needs: [tset]\n    outputs: [../../etc/passwd]\n' > "$REPO/.pipeline/config.yaml"
"$CI" validate "$REPO/.pipeline/config.yaml" || echo "    (exit status $?: as expected)"

step "done"
echo "    work files: $DEMO (report: $DEMO/report.json)"
