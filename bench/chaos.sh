#!/usr/bin/env bash
# The chaos test (tests/it/chaos.rs) for many seeds, longer than CI runs it:
#
#   bash bench/chaos.sh [SEEDS] [ROUNDS]      # default 10 seeds of 20 rounds
#
# Seeds 1..SEEDS, both backends; the PostgreSQL one on a throwaway server from
# pg_virtualenv when it is installed (as root the test also starts a private server of
# its own, to restart it), else on TASKFORM_TEST_POSTGRES, else skipped. Stops at the
# first failing seed, which the test prints with the command that replays it.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=${1:-10}
rounds=${2:-20}
run() {
  for seed in $(seq 1 "$seeds"); do
    echo "== seed $seed, $rounds rounds"
    TASKFORM_CHAOS_SEED=$seed TASKFORM_CHAOS_ROUNDS=$rounds cargo test --test it chaos:: -- --nocapture
  done
}
if [ -z "${TASKFORM_TEST_POSTGRES:-}" ] && command -v pg_virtualenv >/dev/null; then
  export -f run
  export seeds rounds
  pg_virtualenv -t bash -c 'export TASKFORM_TEST_POSTGRES="postgres://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE"; run'
else
  run
fi
