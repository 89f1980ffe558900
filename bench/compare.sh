#!/usr/bin/env bash
# Two builds of taskform side by side, in one run (this VM's speed moves 2-4x between
# runs, so a change is judged only against a build measured beside it): the no-op plan
# of 10,000 tasks with the state in a file and in PostgreSQL, and the apply of 1,000
# creates with the state in PostgreSQL (emulator at 0 ms, fsync on).
#
#   git worktree add /tmp/base <commit> && (cd /tmp/base && cargo build --release)
#   cp /tmp/base/target/release/taskform /tmp/taskform-base
#   cargo build --release && bash bench/compare.sh /tmp/taskform-base target/release/taskform
#
# Medians of RUNS runs (default 9). Needs hyperfine and PostgreSQL (pg_virtualenv, or
# TASKFORM_BENCH_POSTGRES).
set -euo pipefail
[ $# = 2 ] || { echo "usage: bash bench/compare.sh BASE_BINARY NEW_BINARY" >&2; exit 2; }
A=$(realpath "$1"); B=$(realpath "$2")
cd "$(dirname "$0")/.."
. bench/postgres.sh "$@"
[ -n "$PG" ] || { echo "bench/compare.sh needs PostgreSQL: apt-get install postgresql" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 1; }
cargo build --release --example gen-manifests >&2
TARGET=${CARGO_TARGET_DIR:-$PWD/target}
case $TARGET in /*) ;; *) TARGET=$PWD/$TARGET ;; esac
GEN=$TARGET/release/examples/gen-manifests
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
export TASKFORM_AUTH_TOKEN=taskform-demo-token NO_COLOR=1
"$GEN" m1000 1000 >/dev/null; "$GEN" m10000 10000 >/dev/null
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port); "$B" emulator --listen 127.0.0.1:$P --rate-limit 0 >/dev/null 2>&1 &
sleep 0.5
for v in a b; do
  T=$A; [ $v = b ] && T=$B
  "$T" apply --yes m10000 --endpoint http://127.0.0.1:$P --max-rate 0 --concurrency 16 --allow-duplicate-names --state s$v.json >/dev/null 2>&1
  "$T" state copy s$v.json "$PG" --state-name noop --state-schema tf$v --force >/dev/null
  printf '#!/bin/sh\npsql -q -c "DELETE FROM tf%s.states WHERE name = %s" -c "DELETE FROM tf%s.journal WHERE state = %s" >/dev/null 2>&1 || true\n' $v "'a1000'" $v "'a1000'" > prep-$v.sh
  chmod +x prep-$v.sh
done
R=${RUNS:-9}
hyperfine -N -w 1 -r "$R" --export-json noop.json \
  -n "base: no-op plan, 10,000, file" "$A plan m10000 --state sa.json" \
  -n "new:  no-op plan, 10,000, file" "$B plan m10000 --state sb.json" \
  -n "base: no-op plan, 10,000, PostgreSQL" "$A plan m10000 --state $PG --state-name noop --state-schema tfa" \
  -n "new:  no-op plan, 10,000, PostgreSQL" "$B plan m10000 --state $PG --state-name noop --state-schema tfb" >/dev/null
hyperfine -N -r "$R" --export-json apply.json \
  -n "base: apply, 1,000 creates, PostgreSQL" --prepare ./prep-a.sh "$A apply --yes m1000 --endpoint http://127.0.0.1:$P --max-rate 0 --concurrency 16 --allow-duplicate-names --state $PG --state-name a1000 --state-schema tfa" \
  -n "new:  apply, 1,000 creates, PostgreSQL" --prepare ./prep-b.sh "$B apply --yes m1000 --endpoint http://127.0.0.1:$P --max-rate 0 --concurrency 16 --allow-duplicate-names --state $PG --state-name a1000 --state-schema tfb" >/dev/null
python3 - <<'PY'
import json, statistics
for f in ["noop.json", "apply.json"]:
    for r in json.load(open(f))["results"]:
        t = r["times"]
        print(f'{r["command"]:<42} median {statistics.median(t):.3f} s  (min {min(t):.3f}, max {max(t):.3f}, n={len(t)})')
PY
