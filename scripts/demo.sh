#!/bin/sh
# Airlock demo on the embedded defaults, everything on 127.0.0.1:
#   1. a developer runs the sample service's pipeline locally, in the CI sandbox;
#   2. the CI cluster (`ci-cluster serve`) gets a Gerrit change, runs it from a
#      `git daemon`, and votes Verified +1 / -1 on a stand-in Gerrit that prints
#      every call; the change merges, CI passes on main and writes a signed pass
#      record into the one-way outbox for the trusted builder.
# Ports: AIRLOCK_DEMO_PORT_BASE (default 18400) .. +2. On a terminal the servers stay up
# until Ctrl-C so the UI can be browsed; AIRLOCK_DEMO_ONCE=1 exits when the walk is done.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
sh scripts/install-deps.sh

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
say() { printf '    %s\n' "$*"; }

step "building ci-cluster and the stand-in forge"
cargo build -q -p ci-cluster -p airlock-tests --bins
CI="$ROOT/target/debug/ci-cluster"
FORGE="$ROOT/target/debug/stand-in-forge"

BASE=${AIRLOCK_DEMO_PORT_BASE:-18400}
GIT_PORT=$BASE; CI_PORT=$((BASE + 1)); FORGE_PORT=$((BASE + 2))
DEMO=$(mktemp -d /var/tmp/airlock-demo-XXXXXX)
chmod 0711 "$DEMO"
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

# The sample service: a small C program with tests and a test -> build -> publish pipeline.
REPO="$DEMO/work/greet"
mkdir -p "$REPO"
cp -R "$ROOT/demo/sample-service/." "$REPO/"
G="git -C $REPO -c user.name=Dev -c user.email=dev@example.org"
$G init -q -b main
$G add -A
$G commit -q -m "greet: first version"

step "1. a developer runs the pipeline locally, in the same sandbox CI uses"
"$CI" validate "$REPO/.pipeline/config.yaml"
"$CI" run --repo "$REPO" --event push --out "$DEMO/out"
say "built: $(cd "$DEMO/out" && sha256sum dist/greet.tar.gz)"
say "running it: $("$DEMO/out/dist/greet" Airlock)"

step "2. the canonical Git server (git daemon on 127.0.0.1:$GIT_PORT)"
mkdir -p "$DEMO/git"
git init -q --bare "$DEMO/git/greet.git"
git -C "$DEMO/git/greet.git" symbolic-ref HEAD refs/heads/main
$G push -q "$DEMO/git/greet.git" main:refs/heads/main
git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$DEMO/git" --export-all "$DEMO/git" 2>"$DEMO/git-daemon.log" &
PIDS="$PIDS $!"

step "3. a stand-in Gerrit on 127.0.0.1:$FORGE_PORT (prints each call the CI makes)"
"$FORGE" --listen "127.0.0.1:$FORGE_PORT" > "$DEMO/forge.log" 2>&1 &
PIDS="$PIDS $!"

step "4. the CI cluster: ci-cluster serve on 127.0.0.1:$CI_PORT"
printf 'gerrit-webhook-secret\n' > "$DEMO/gerrit-secret"
printf 'gerrit-http-password\n' > "$DEMO/gerrit-password"
chmod 0600 "$DEMO/gerrit-secret" "$DEMO/gerrit-password"
cat > "$DEMO/ci.toml" <<TOML
listen = "127.0.0.1:$CI_PORT"
data_dir = "$DEMO/ci-data"

[forges.gerrit]
webhook_secret = { file = "$DEMO/gerrit-secret" }
url = "http://127.0.0.1:$FORGE_PORT"
user = "airlock-ci"
password = { file = "$DEMO/gerrit-password" }

[[projects]]
name = "greet"
forge = "gerrit"
git_url = "git://127.0.0.1:$GIT_PORT/greet.git"
protected = ["refs/heads/main", "refs/tags/v*"]
TOML
sed 's/^/    /' "$DEMO/ci.toml"
AIRLOCK_LOG=info "$CI" serve --config "$DEMO/ci.toml" 2>"$DEMO/ci.log" &
PIDS="$PIDS $!"
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$CI_PORT/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

hook() { # hook JSON -> prints the server's answer
    curl -s -X POST -H "Authorization: Bearer gerrit-webhook-secret" -H "Content-Type: application/json" \
        --data "$1" "http://127.0.0.1:$CI_PORT/hooks/gerrit"
}
wait_run() { # wait_run ID -> prints its final status
    for _ in $(seq 1 600); do
        s=$(curl -s "http://127.0.0.1:$CI_PORT/api/v1/runs/$1" | jq -r '.run.status // empty')
        case "$s" in passed|failed|cancelled|error) echo "$s"; return;; esac
        sleep 0.2
    done
    echo "timeout"
}
run_id() { jq -r '.run'; }
patchset() { # patchset CHANGE PS COMMIT
    printf '{"type":"patchset-created","change":{"project":"greet","branch":"main","number":%s,"subject":"greet: a change","owner":{"name":"Dev"}},"patchSet":{"number":%s,"revision":"%s","ref":"refs/changes/%02d/%s/%s"},"uploader":{"name":"Dev"},"eventCreatedOn":%s}' \
        "$1" "$2" "$3" "$1" "$1" "$2" "$(date +%s)"
}
forge_tail() { sleep 1; say "the stand-in Gerrit received:"; tail -n +$(( $1 + 1 )) "$DEMO/forge.log" | sed 's/^/      /'; }

step "5. a change is pushed for review: CI runs its tests and votes"
sed -i 's/Hello, %s!/Hello there, %s!/' "$REPO/src/greet.c"
sed -i 's/"Hello, /"Hello there, /' "$REPO/tests/run.sh"
$G commit -q -am "greet: friendlier greeting"
C1=$($G rev-parse HEAD)
$G push -q "$DEMO/git/greet.git" "$C1:refs/changes/01/1/1"
LINES=$(wc -l < "$DEMO/forge.log")
ANSWER=$(hook "$(patchset 1 1 "$C1")")
say "webhook answered: $ANSWER"
say "run $(echo "$ANSWER" | run_id): $(wait_run "$(echo "$ANSWER" | run_id)")"
forge_tail "$LINES"

step "6. a broken patchset: the test fails and CI votes -1"
sed -i 's/Hello there, %s!/Hello there %s/' "$REPO/src/greet.c"
$G commit -q -am "greet: drop the comma (breaks the tests)"
C2=$($G rev-parse HEAD)
$G push -q "$DEMO/git/greet.git" "$C2:refs/changes/01/1/2"
LINES=$(wc -l < "$DEMO/forge.log")
ANSWER=$(hook "$(patchset 1 2 "$C2")")
say "run $(echo "$ANSWER" | run_id): $(wait_run "$(echo "$ANSWER" | run_id)")"
forge_tail "$LINES"

step "7. the good patchset merges: CI passes on main and writes a pass record"
$G push -q "$DEMO/git/greet.git" "$C1:refs/heads/main"
ANSWER=$(hook "$(printf '{"type":"ref-updated","refUpdate":{"project":"greet","refName":"refs/heads/main","oldRev":"%s","newRev":"%s"},"submitter":{"name":"Dev"},"eventCreatedOn":%s}' "$(git -C "$DEMO/git/greet.git" rev-parse "$C1~1")" "$C1" "$(date +%s)")")
say "run $(echo "$ANSWER" | run_id): $(wait_run "$(echo "$ANSWER" | run_id)")"
for f in "$DEMO"/ci-data/outbox/*.json; do
    say "pass record in the outbox: $(basename "$f")"
    jq -r .payload "$f" | base64 -d | jq . | sed 's/^/      /'
done
say "signed with the CI's origin key (proves where it came from, never that it is true):"
say "  public key $(cat "$DEMO/ci-data/keys/ci-origin.key.pub")"

step "done"
say "CI log: $DEMO/ci.log   stand-in forge log: $DEMO/forge.log   data: $DEMO/ci-data"
say "the reviewer UI:  http://127.0.0.1:$CI_PORT/   (runs: http://127.0.0.1:$CI_PORT/runs, API: /api/v1/openapi.json)"
say "from a terminal:  $CI runs list --server http://127.0.0.1:$CI_PORT"
if [ -t 0 ] && [ -z "${AIRLOCK_DEMO_ONCE:-}" ]; then
    say "the servers stay up until Ctrl-C (set AIRLOCK_DEMO_ONCE=1 to exit at once)"
    while :; do sleep 3600; done
fi
