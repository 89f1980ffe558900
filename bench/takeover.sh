#!/usr/bin/env bash
# Takeover with the state in PostgreSQL (the lease: README, "Fencing and the lease"):
#
#   bash bench/takeover.sh
#
# 1. An idle leader (`watch`, journal empty) killed with kill -9: the time from the
#    kill to the standby watcher's first reconcile (its `state loaded` debug line).
#    Nothing was being sent, so the standby need not wait out the lease.
# 2. An apply killed with kill -9 while it sends (journal open): the time from the
#    kill until the next apply, started at once, has settled and exits; it waits the
#    rest of the killed one's lease (default 15 s) plus its --timeout (5 s here), and
#    says so.
#
# Medians of RUNS samples (default 5 and 3). Runs on a throwaway server started with
# pg_virtualenv, or on the one TASKFORM_BENCH_POSTGRES names. Builds in
# $CARGO_TARGET_DIR when set (else target/).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/postgres.sh
[ -n "$PG" ] || { echo "bench/takeover.sh needs PostgreSQL: apt-get install postgresql" >&2; exit 1; }
ROOT=$PWD
cargo build --release --bin taskform >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
T=$TARGET/release/taskform
WORK=$(mktemp -d)
trap 'kill -9 $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
export TASKFORM_AUTH_TOKEN=taskform-demo-token NO_COLOR=1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port)
"$T" emulator --listen 127.0.0.1:$P --rate-limit 0 >/dev/null 2>&1 &
URL=http://127.0.0.1:$P
sleep 0.5
now() { python3 -c 'import time; print(f"{time.time():.3f}")'; }
# The UTC time of the first log line of FILE that contains TEXT, as seconds.
logged() { python3 - "$1" "$2" <<'PY'
import sys, datetime
for line in open(sys.argv[1], errors="replace"):
    if sys.argv[2] in line:
        t = line.split()[0].rstrip("Z")
        print(f"{datetime.datetime.fromisoformat(t).replace(tzinfo=datetime.timezone.utc).timestamp():.3f}")
        break
PY
}
project() { # project DIR NAME N
  mkdir -p "$1"
  printf 'project_id: 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d\nworkspace: demo-workspace\nstate: %s\nstate_name: %s\ndefaults:\n  user_id: u-1\n  dir_id: "0"\n' "$PG" "$2" > "$1/taskform.yaml"
  for i in $(seq 1 "$3"); do
    printf 'name: %s-%03d\ndata_source_type: DLI\nschedule_config:\n  schedule_type: RUN_ONCE\n  max_time_out: 10\ntask_config:\n  data_connection_name: x\n' "$2" "$i" > "$1/t$i.yaml"
  done
}
median() { python3 -c 'import statistics,sys; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f} s (min {min(v):.2f}, max {max(v):.2f}, n={len(v)})")' "$@"; }

idle=()
for r in $(seq 1 "${RUNS:-5}"); do
  project "w$r" "idle$r" 3
  "$T" -v watch "w$r" --endpoint "$URL" 2> "leader$r.log" & L=$!
  until grep -q "reconciled\|created" "leader$r.log" 2>/dev/null; do sleep 0.1; done
  "$T" -v watch "w$r" --endpoint "$URL" 2> "standby$r.log" & S=$!
  until grep -q "standing by" "standby$r.log" 2>/dev/null; do sleep 0.1; done
  t0=$(now); kill -9 $L; wait $L 2>/dev/null || true
  until grep -q "state loaded" "standby$r.log" 2>/dev/null; do sleep 0.05; done
  t1=$(logged "standby$r.log" "state loaded")
  idle+=("$(python3 -c "print($t1 - $t0)")")
  kill $S; wait $S 2>/dev/null || true
done

sending=()
for r in $(seq 1 "${RUNS_SENDING:-3}"); do
  project "a$r" "sending$r" 40
  "$T" apply --yes "a$r" --endpoint "$URL" --max-rate 4 --timeout 5 >/dev/null 2>"killed$r.log" & A=$!
  sleep 2
  t0=$(now); kill -9 $A; wait $A 2>/dev/null || true
  "$T" apply --yes "a$r" --endpoint "$URL" --max-rate 0 --lock-timeout 60 >/dev/null 2>"next$r.log"
  t1=$(now)
  grep -q "previous holder's lease" "next$r.log" || { echo "the next apply did not say it waits:"; cat "next$r.log"; exit 1; }
  sending+=("$(python3 -c "print($t1 - $t0)")")
done

echo "Takeover, state in PostgreSQL (lease 15 s renewed every 5 s):"
echo "- idle leader killed (kill -9), to the standby's first reconcile: $(median "${idle[@]}")"
echo "- apply killed while sending (--timeout 5), to the next apply's exit: $(median "${sending[@]}")"
echo "  (it waits the rest of the lease + 5 s + 1 s, then settles and applies; one line:)"
grep "previous holder's lease" next1.log | head -1 | cut -c1-200
