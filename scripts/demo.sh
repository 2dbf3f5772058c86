#!/bin/sh
# Airlock, the whole chain on one machine, everything on 127.0.0.1:
#   the project's toolchain image is built from Debian packages and pinned by digest ->
#   a change is pushed for review -> CI runs its tests -> Verified +1 lands on a stand-in
#   Gerrit -> the change merges -> CI passes on main and writes a signed pass record ->
#   the trusted builder rebuilds, compares, signs and attests -> a release manager
#   promotes to staging, then production -> the service runs under podman ->
#   `airlock-reconciler audit trace` walks back from the running container to the review.
# On the way, two attacks stop at the boundary: a tampered pass record (builder) and an
# unsigned image written into the environment repository (reconciler).
#
# Usage: scripts/demo.sh [--once]
#   --once (or AIRLOCK_DEMO_ONCE=1): exit when the walk is done; otherwise, on a terminal,
#   the servers stay up until Ctrl-C so the UI can be browsed.
# Ports: AIRLOCK_DEMO_PORT_BASE (default 18400) .. +5. Work dir: AIRLOCK_DEMO_DIR (default a
# new /var/tmp/airlock-demo-XXXXXX). AIRLOCK_BIN_DIR: use binaries from there, no build.
set -eu
cd "$(dirname "$0")/.."
ROOT=$PWD
ONCE=${AIRLOCK_DEMO_ONCE:-}
[ "${1:-}" = "--once" ] && ONCE=1
START=$(date +%s)

step() { printf '\n\033[1m==> %s\033[0m  (%ss)\n' "$*" "$(( $(date +%s) - START ))"; }
say() { printf '    %s\n' "$*"; }
die() { printf 'demo: FAILED: %s\n' "$*" >&2; exit 1; }

sh scripts/install-deps.sh
if [ -n "${AIRLOCK_BIN_DIR:-}" ]; then
    BIN=$AIRLOCK_BIN_DIR
else
    step "building ci-cluster, trusted-builder, airlock-reconciler and the stand-in forge"
    cargo build -q -p ci-cluster -p trusted-builder -p airlock-reconciler -p airlock-tests --bins
    BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
fi
CI="$BIN/ci-cluster"; TB="$BIN/trusted-builder"; RC="$BIN/airlock-reconciler"; FORGE="$BIN/stand-in-forge"; MKIMAGE="$BIN/build-test-image"
for b in "$CI" "$TB" "$RC" "$FORGE" "$MKIMAGE"; do [ -x "$b" ] || die "$b is missing (cargo build -p ci-cluster -p trusted-builder -p airlock-reconciler -p airlock-tests --bins)"; done

BASE=${AIRLOCK_DEMO_PORT_BASE:-18400}
GIT_PORT=$BASE; CI_PORT=$((BASE + 1)); FORGE_PORT=$((BASE + 2)); REG_PORT=$((BASE + 3)); HOOK_PORT=$((BASE + 4))
PUB_PORT=$((BASE + 5))
REG="127.0.0.1:$REG_PORT"   # the trusted side's registry: signed images, and its copy of the toolchain
PUB="127.0.0.1:$PUB_PORT"   # the public registry the project's pipeline names
if [ -n "${AIRLOCK_DEMO_DIR:-}" ]; then DEMO=$AIRLOCK_DEMO_DIR; mkdir -p "$DEMO"; else DEMO=$(mktemp -d /var/tmp/airlock-demo-XXXXXX); fi
chmod 0711 "$DEMO"
# Podman with runc and limits this machine allows, for the reconciler and for us.
cat > "$DEMO/containers.conf" <<'CONF'
[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF="$DEMO/containers.conf"
PODS="greet-staging-greet greet-prod-greet greet-prod-rogue"
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PODS; do podman pod rm --force --time 0 "$p" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup # pods left by an earlier run that was killed hard

wait_for() { # wait_for SECONDS COMMAND... : retry until it succeeds
    t=$1; shift
    for _ in $(seq 1 $((t * 5))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    return 1
}

# ---------------------------------------------------------------------------------------
REPO="$DEMO/work/greet"
mkdir -p "$REPO"
cp -R "$ROOT/demo/sample-service/." "$REPO/"
G="git -C $REPO -c user.name=Dev -c user.email=dev@example.org"
$G init -q -b main
$G add -A
$G commit -q -m "greet: first version"

step "1. the project's toolchain image: gcc, libc6-dev, binutils, ... from Debian packages, pinned by digest"
start_registry() { # start_registry NAME HOST:PORT
    cat > "$DEMO/$1.yml" <<YML
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $DEMO/$1}
  delete: {enabled: true}
http: {addr: "$2"}
YML
    docker-registry serve "$DEMO/$1.yml" > "$DEMO/$1.log" 2>&1 &
    PIDS="$PIDS $!"
    wait_for 10 curl -fs "http://$2/v2/" || die "docker-registry $1 did not start"
}
start_registry public-registry "$PUB"
start_registry registry "$REG"
TOOLCHAIN=$("$MKIMAGE" toolchain --registry "$PUB" --repository toolchain --tag bookworm 2>"$DEMO/toolchain-image.log") \
    || { cat "$DEMO/toolchain-image.log"; die "building the toolchain image"; }
sed 's/^/    /' "$DEMO/toolchain-image.log"
say "pushed to the public registry $PUB: $TOOLCHAIN"
# The air-gapped builder never pulls from the public side: an operator copies the image into the
# trusted registry; --preserve-digests keeps the bytes, so the digest the pipeline pins still names it.
skopeo copy --quiet --preserve-digests --src-tls-verify=false --dest-tls-verify=false \
    "docker://$TOOLCHAIN" "docker://$REG/toolchain:bookworm" || die "copying the toolchain into the trusted registry"
say "copied into the trusted registry $REG (same digest)"
# The project pins it as the default image of every job.
sed -i "s|^version: 1\$|version: 1\nimage: $TOOLCHAIN|" "$REPO/.pipeline/config.yaml"
$G commit -q -am "pipeline: build in the pinned toolchain image"

step "2. a developer runs the pipeline locally, in the same sandbox and image CI uses"
"$CI" validate "$REPO/.pipeline/config.yaml"
"$CI" run --repo "$REPO" --event push --insecure-registry "$PUB" --image-cache "$DEMO/images-local" \
    --out "$DEMO/out" > "$DEMO/local-run.log" 2>&1 || { cat "$DEMO/local-run.log"; die "local run"; }
grep -E 'image .*(layer|ready in)' "$DEMO/local-run.log" | head -2 | cut -c1-150 | sed 's/^ */    /' || true
say "built: $(cd "$DEMO/out" && sha256sum dist/greet.tar.gz)"
say "running it: $("$DEMO/out/dist/greet" Airlock)"

step "3. servers on 127.0.0.1: git daemon :$GIT_PORT, stand-in Gerrit :$FORGE_PORT (registries :$PUB_PORT public, :$REG_PORT trusted)"
mkdir -p "$DEMO/git"
git init -q --bare "$DEMO/git/greet.git"
git -C "$DEMO/git/greet.git" symbolic-ref HEAD refs/heads/main
$G push -q "$DEMO/git/greet.git" main:refs/heads/main
git init -q --bare "$DEMO/git/environments.git"
git -C "$DEMO/git/environments.git" symbolic-ref HEAD refs/heads/main
git daemon --reuseaddr --listen=127.0.0.1 --port="$GIT_PORT" --base-path="$DEMO/git" --export-all \
    --enable=receive-pack "$DEMO/git" 2>"$DEMO/git-daemon.log" &
PIDS="$PIDS $!"
"$FORGE" --listen "127.0.0.1:$FORGE_PORT" > "$DEMO/forge.log" 2>&1 &
PIDS="$PIDS $!"

step "4. the CI cluster (untrusted plane): ci-cluster serve on 127.0.0.1:$CI_PORT"
printf 'gerrit-webhook-secret\n' > "$DEMO/gerrit-secret"
printf 'gerrit-http-password\n' > "$DEMO/gerrit-password"
chmod 0600 "$DEMO/gerrit-secret" "$DEMO/gerrit-password"
cat > "$DEMO/ci.toml" <<TOML
listen = "127.0.0.1:$CI_PORT"
data_dir = "$DEMO/ci-data"
public_url = "http://127.0.0.1:$CI_PORT"

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

[images]
insecure = ["$PUB"]
cache_dir = "$DEMO/images-ci"
TOML
AIRLOCK_LOG=info "$CI" serve --config "$DEMO/ci.toml" 2>"$DEMO/ci.log" &
PIDS="$PIDS $!"
wait_for 20 curl -fs "http://127.0.0.1:$CI_PORT/healthz" || die "ci-cluster did not start (see $DEMO/ci.log)"
say "it holds no signing key; its only output to the trusted side is the outbox $DEMO/ci-data/outbox"

step "5. the trusted plane: signing key, trusted-builder serve (no port), airlock-reconciler reconcile"
printf 'demo-cosign-password\n' > "$DEMO/cosign-password"
chmod 0600 "$DEMO/cosign-password"
"$TB" keys generate --out "$DEMO/keys" --password-file "$DEMO/cosign-password" | sed 's/^/    /'
wait_for 10 test -s "$DEMO/ci-data/keys/ci-origin.key.pub" || die "the CI origin key was not written"
cat > "$DEMO/builder.toml" <<TOML
data_dir = "$DEMO/builder-data"
outbox_dir = "$DEMO/ci-data/outbox"
origin_keys = ["$DEMO/ci-data/keys/ci-origin.key.pub"]
builder_id = "https://airlock.example/trusted-builder/demo"
strict_reproducibility = true
poll_interval_secs = 1

[registry]
insecure = ["$REG"]

[images]
registry = "$REG"   # job images come only from the trusted registry (never from $PUB)
cache_dir = "$DEMO/images-builder"

[signing]
backend = "file"
key = "$DEMO/keys/cosign.key"
password = { file = "$DEMO/cosign-password" }

[projects.greet]
git_url = "git://127.0.0.1:$GIT_PORT/greet.git"
protected_refs = ["refs/heads/main", "refs/tags/v*"]
image_repository = "$REG/greet"
TOML
"$TB" serve --config "$DEMO/builder.toml" > "$DEMO/builder.log" 2>&1 &
PIDS="$PIDS $!"
say "the builder opens no port: it reads the outbox and fetches sources itself"

# The environment repository: the platform team declares greet in staging and production,
# before any signed digest exists (the placeholder is refused, nothing runs).
ENV="$DEMO/work/environments"
E="git -C $ENV -c user.name=Platform -c user.email=platform@example.org"
git clone -q "git://127.0.0.1:$GIT_PORT/environments.git" "$ENV" 2>/dev/null
PLACEHOLDER="$REG/greet@sha256:$(printf '0%.0s' $(seq 1 64))"
for env in staging:greet-staging production:greet-prod; do
    e=${env%%:*}; ns=${env#*:}
    mkdir -p "$ENV/environments/$e/$ns"
    cat > "$ENV/environments/$e/$ns/greet.yaml" <<YAML
# greet, the sample service ($e). Release managers change the image with
# \`airlock-reconciler promote\`, never by hand.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: greet
spec:
  replicas: 1
  selector:
    matchLabels: {app: greet}
  template:
    metadata:
      labels: {app: greet}
    spec:
      containers:
      - name: greet
        image: $PLACEHOLDER
        args: ["--serve", "Airlock ($e)"]
YAML
done
$E add -A
$E commit -q -m "Declare greet in staging and production"
$E push -q origin HEAD:refs/heads/main
printf 'env-hook-token\n' > "$DEMO/env-hook.token"
chmod 0600 "$DEMO/env-hook.token"
cat > "$DEMO/reconciler.toml" <<TOML
data_dir = "$DEMO/reconciler-data"
trusted_keys = ["$DEMO/keys/cosign.pub"]
poll_interval_secs = 30
listen = "127.0.0.1:$HOOK_PORT"
hook_token = { file = "$DEMO/env-hook.token" }

[environment_repo]
url = "git://127.0.0.1:$GIT_PORT/environments.git"
branch = "main"

[registry]
insecure = ["$REG"]

[podman]
containers_conf = "$DEMO/containers.conf"
tls_verify = false

[environments.staging]
target = "podman"
[environments.staging.namespaces.greet-staging]
allowed_sources = ["git://127.0.0.1:$GIT_PORT/greet.git"]

[environments.production]
target = "podman"
requires_healthy_in = "staging"
[environments.production.namespaces.greet-prod]
allowed_sources = ["git://127.0.0.1:$GIT_PORT/greet.git"]
TOML
"$RC" reconcile --config "$DEMO/reconciler.toml" > "$DEMO/reconciler.log" 2>&1 &
PIDS="$PIDS $!"
wait_for 30 grep -q '^sync ' "$DEMO/reconciler.log" || die "the reconciler did not sync (see $DEMO/reconciler.log)"
say "reconciler: $(grep '^sync ' "$DEMO/reconciler.log" | head -1)"
grep 'REFUSED' "$DEMO/reconciler.log" | head -2 | cut -c1-160 | sed 's/^/    /'

# ---------------------------------------------------------------------------------------
hook() { # hook JSON -> prints the server's answer
    curl -s -X POST -H "Authorization: Bearer gerrit-webhook-secret" -H "Content-Type: application/json" \
        --data "$1" "http://127.0.0.1:$CI_PORT/hooks/gerrit"
}
wait_run() { # wait_run ID -> prints its final status
    for _ in $(seq 1 900); do
        s=$(curl -s "http://127.0.0.1:$CI_PORT/api/v1/runs/$1" | jq -r '.run.status // empty')
        case "$s" in passed|failed|cancelled|error) echo "$s"; return;; esac
        sleep 0.2
    done
    echo "timeout"
}
run_id() { jq -r '.run'; }
patchset() { # patchset CHANGE PS COMMIT
    printf '{"type":"patchset-created","change":{"project":"greet","branch":"main","number":%s,"subject":"greet: a friendlier greeting","owner":{"name":"Dev"}},"patchSet":{"number":%s,"revision":"%s","ref":"refs/changes/%02d/%s/%s"},"uploader":{"name":"Dev"},"eventCreatedOn":%s}' \
        "$1" "$2" "$3" "$1" "$1" "$2" "$(date +%s)"
}
forge_tail() { sleep 1; say "the stand-in Gerrit received:"; tail -n +$(( $1 + 1 )) "$DEMO/forge.log" | cut -c1-200 | sed 's/^/      /'; }

upload() { # upload PATCHSET: push HEAD as patchset PATCHSET of change 1, send the hook; sets C, R, S
    C=$($G rev-parse HEAD)
    $G push -q "$DEMO/git/greet.git" "$C:refs/changes/01/1/$1"
    LINES=$(wc -l < "$DEMO/forge.log")
    R=$(hook "$(patchset 1 "$1" "$C")" | run_id)
    S=$(wait_run "$R")
    say "run $R: $S   (http://127.0.0.1:$CI_PORT/runs/$R)"
    forge_tail "$LINES"
}

step "6. a change is pushed for review: CI runs its tests and votes Verified +1"
sed -i 's/Hello, %s!/Hello there, %s!/' "$REPO/src/greet.c"
sed -i 's/"Hello, /"Hello there, /' "$REPO/tests/run.sh"
$G commit -q -am "greet: friendlier greeting"
upload 1
C1=$C
[ "$S" = passed ] || die "the review run did not pass"

step "7. a broken patchset: the test fails and CI votes Verified -1"
sed -i 's/Hello there, %s!/Hello there %s/' "$REPO/src/greet.c"
$G commit -q -am "greet: drop the comma (breaks the tests)"
upload 2

step "8. the good patchset merges: CI passes on main and writes a pass record"
$G push -q "$DEMO/git/greet.git" "$C1:refs/heads/main"
ANSWER=$(hook "$(printf '{"type":"ref-updated","refUpdate":{"project":"greet","refName":"refs/heads/main","oldRev":"%s","newRev":"%s"},"submitter":{"name":"Dev"},"eventCreatedOn":%s}' "$(git -C "$DEMO/git/greet.git" rev-parse "$C1~1")" "$C1" "$(date +%s)")")
R3=$(echo "$ANSWER" | run_id)
S3=$(wait_run "$R3")
say "run $R3: $S3"
[ "$S3" = passed ] || die "the run on main did not pass"
wait_for 20 sh -c "ls '$DEMO'/ci-data/outbox/*.json" || die "no pass record was written"
RECORD=$(ls "$DEMO"/ci-data/outbox/*.json | head -1)
say "pass record $(basename "$RECORD"), signed with the CI's origin key:"
jq -r .payload "$RECORD" | base64 -d | jq -c '{project, git_ref, commit, job, ci_run_id, images, outputs: [.outputs[].path]}' | sed 's/^/      /'

step "9. the trusted builder pulls the record, rebuilds with no network, compares, signs and attests"
wait_for 180 grep -q '"event":"signed"' "$DEMO/builder-data/decisions.jsonl" || { cat "$DEMO/builder.log"; die "the builder did not sign"; }
grep -E 'accepted|built|pushed|signed' "$DEMO/builder.log" | cut -c1-170 | sed 's/^/    /'
say "it rebuilt in the image the record names, pulled from its own registry: $(jq -r .pulled_from "$DEMO"/images-builder/sha256-*/image.json)"
DIGEST=$(jq -r 'select(.event == "signed") | .digest' "$DEMO/builder-data/decisions.jsonl" | head -1)
IMAGE="$REG/greet@$DIGEST"
"$TB" verify "$IMAGE" --key "$DEMO/keys/cosign.pub" --insecure-registry "$REG" | sed 's/^/    /'

step "10. attack: a tampered pass record (same signature, another commit) is refused by the builder"
TAMPERED="$DEMO/ci-data/outbox/zz-tampered.json"
jq --arg p "$(jq -r .payload "$RECORD" | base64 -d | jq -c '.commit = "0000000000000000000000000000000000000bad"' | base64 -w0)" '.payload = $p' "$RECORD" > "$TAMPERED.tmp"
mv "$TAMPERED.tmp" "$TAMPERED"
wait_for 20 grep -q 'zz-tampered.json' "$DEMO/builder-data/decisions.jsonl" || die "the tampered record was not looked at"
grep 'zz-tampered.json: REFUSED' "$DEMO/builder.log" | cut -c1-200 | sed 's/^/    /'

sync_hook() { curl -fs -X POST -H "Authorization: Bearer env-hook-token" "http://127.0.0.1:$HOOK_PORT/hooks/env" >/dev/null; }
wait_healthy() { # wait_healthy ENV IMAGE: a sync after the change shows IMAGE healthy in ENV
    for _ in $(seq 1 60); do
        sync_hook
        sleep 0.5
        tail -n 1 "$DEMO/reconciler-data/syncs.jsonl" 2>/dev/null | jq -e --arg e "$1" --arg i "$2" \
            '[.namespaces[] | select(.environment == $e) | .health[] | select(.settled and .health.state == "healthy" and (.images | index($i)))] | length > 0' >/dev/null && return 0
    done
    return 1
}

step "11. the release manager promotes to staging (signature, provenance and policy checked; a Git commit)"
"$RC" promote "$IMAGE" --to production --from staging --config "$DEMO/reconciler.toml" --author "Rita Release <rita@example.org>" 2>&1 | sed 's/^/    /' || true
say "(refused: production takes only what staging runs healthily)"
"$RC" promote "$IMAGE" --to staging --config "$DEMO/reconciler.toml" --author "Rita Release <rita@example.org>" | sed 's/^/    /'
sync_hook
wait_healthy staging "$IMAGE" || die "staging does not run $IMAGE"
say "staging runs it: $(podman logs greet-staging-greet-greet 2>&1 | head -1)"

step "12. ... then to production, from staging"
"$RC" promote "$IMAGE" --to production --from staging --config "$DEMO/reconciler.toml" --author "Rita Release <rita@example.org>" | sed 's/^/    /'
sync_hook
wait_healthy production "$IMAGE" || die "production does not run $IMAGE"
say "production runs it under podman (no network):"
podman pod ps --filter name=greet- --format '      {{.Name}}  {{.Status}}'
say "its output: $(podman logs greet-prod-greet-greet 2>&1 | head -1)"

step "13. attack: someone who is not a release manager commits an unsigned image to production"

mkdir -p "$DEMO/rogue/usr/local/bin"
cp "$DEMO/out/dist/greet" "$DEMO/rogue/usr/local/bin/greet"
tar -C "$DEMO/rogue" -cf "$DEMO/rogue.tar" .
podman import -q --change 'ENTRYPOINT ["/usr/local/bin/greet"]' "$DEMO/rogue.tar" "localhost/greet-rogue:demo" >/dev/null
podman push -q --tls-verify=false --digestfile "$DEMO/rogue.digest" localhost/greet-rogue:demo "$REG/greet:rogue"
ROGUE="$REG/greet@$(cat "$DEMO/rogue.digest")"
$E pull -q --ff-only origin main
cat > "$ENV/environments/production/greet-prod/rogue.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: rogue}
spec:
  containers:
  - name: rogue
    image: $ROGUE
    args: ["--serve", "mallory"]
YAML
git -C "$ENV" -c user.name=Mallory -c user.email=mallory@example.org add -A
git -C "$ENV" -c user.name=Mallory -c user.email=mallory@example.org commit -q -m "quick fix"
$E push -q origin HEAD:refs/heads/main
sync_hook
wait_for 30 sh -c "grep -q 'REFUSED Pod/rogue' '$DEMO/reconciler.log'" || die "the unsigned image was not refused"
grep 'REFUSED Pod/rogue' "$DEMO/reconciler.log" | head -1 | cut -c1-220 | sed 's/^/    /'
podman pod exists greet-prod-rogue && die "the unsigned image runs"
say "nothing of it runs; greet keeps running"

step "14. an SRE walks back from the running container to the review"
RUNNING=$(podman inspect greet-prod-greet-greet --format '{{.ImageName}}')
say "podman: greet-prod-greet-greet runs $RUNNING"
"$RC" audit trace "$RUNNING" --builder-config "$DEMO/builder.toml" --reconciler-config "$DEMO/reconciler.toml" \
    --ci-url "http://127.0.0.1:$CI_PORT" > "$DEMO/trace.txt"
sed 's/^/    /' "$DEMO/trace.txt"
"$RC" reconcile status --config "$DEMO/reconciler.toml" --last 3 > "$DEMO/status.txt"

step "done in $(( $(date +%s) - START )) s"
say "the reviewer UI:  http://127.0.0.1:$CI_PORT/   (runs: /runs, API: /api/v1/openapi.json)"
say "logs and data:    $DEMO  (ci.log, builder.log, reconciler.log, trace.txt, status.txt)"
say "try:              $RC reconcile status --config $DEMO/reconciler.toml"
if [ -z "$ONCE" ] && [ -t 0 ]; then
    say "the servers stay up until Ctrl-C (--once exits at once)"
    while :; do sleep 3600; done
fi
