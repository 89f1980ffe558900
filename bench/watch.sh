#!/usr/bin/env bash
# Watch mode: time from the last write of a burst to the create request (repos of
# 1,000 and 10,000 manifests, default debounce 500 ms; the state in a file, and in
# PostgreSQL), and idle CPU of a watcher on 10,000 manifests.
#
#   bash bench/watch.sh
#
# The latency is read from the watcher's own log (debug level): the time of its
# `sending the create` line for the new task minus the time of the atomic rename that
# wrote the manifest; also to its `created` line (answered, and recorded in the
# journal). The debug lines split it into the debounce (to the `changed` line that
# ends the quiet) and what follows it; the reconcile is normally prepared during the
# quiet (`prepared during the wait`), and the time that took is shown apart. Builds in
# $CARGO_TARGET_DIR when set (else target/).
#
# The PostgreSQL row runs on a throwaway server started with pg_virtualenv (fsync
# on), or on the one TASKFORM_BENCH_POSTGRES names; without either it is left out.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/postgres.sh
. bench/binary.sh   # T and GEN (TASKFORM_BIN: a binary built already)
# BENCH_ALERTS=0 leaves out the row with alerts (a binary without notify:).
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
export TASKFORM_AUTH_TOKEN=taskform-demo-token NO_COLOR=1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
latency() {
  # latency N [LABEL STATE-ARGS...]; a LABEL with "alerts" watches a copy of the
  # folder whose taskform.yaml sends alerts to a local receiver (notify:).
  local n=$1 dir=m$1 label=${2:-file}
  shift; shift || true
  case $label in
    *alerts*)
      [ -d "m$n" ] || "$GEN" "m$n" "$n" >/dev/null
      rm -rf "m${n}a"; cp -r "m$n" "m${n}a"; dir=m${n}a
      printf 'notify:\n  - type: generic\n    url_from: BENCH_ALERTS_URL\n' >> "$dir/taskform.yaml"
      # A state of its own: the latency tasks' names repeat between the runs.
      [ $# -gt 0 ] || set -- --state "s${n}a.json"
      ;;
  esac
  local state=("$@")
  [ ${#state[@]} -gt 0 ] || state=(--state "s$n.json")
  # An emulator of its own: the generated names repeat between the runs.
  P=$(port)
  "$T" emulator --listen 127.0.0.1:$P --rate-limit 0 >/dev/null 2>&1 &
  sleep 0.3
  [ -d "$dir" ] || "$GEN" "$dir" "$n" >/dev/null
  rm -rf "$dir"/latency-*.yaml
  RUST_LOG=taskform=debug "$T" watch "$dir" --endpoint http://127.0.0.1:$P --max-rate 0 --concurrency 16 "${state[@]}" --log-format json >/dev/null 2>"w$n.log" &
  local w=$!
  python3 - "$dir" "w$n.log" "$n" "$label" <<'PY'
import json, os, statistics, sys, time
from datetime import datetime
folder, log, n, label = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
seen = []
offset = 0
def lines():
    # Only what was appended since the last look is parsed.
    global offset
    with open(log) as f:
        f.seek(offset)
        chunk = f.read()
    complete = chunk[: chunk.rfind("\n") + 1]
    offset += len(complete.encode())
    for l in complete.splitlines():
        try:
            seen.append(json.loads(l))
        except ValueError:
            pass
    return seen
def reconciled():
    return sum(1 for v in lines() if v.get("message") == "reconciled")
deadline = time.time() + 300
while reconciled() < 1 and time.time() < deadline:
    time.sleep(0.1)
def at(v):
    return datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")).timestamp()
samples, recorded, parts = [], [], []
for i in range(7):
    time.sleep(2.5)   # past the cache's settle time, as in real use
    body = open(f"{folder}/group-000/bench-task-00000.yaml").read().replace("bench-task-00000", f"watch-latency-{i}")
    path = f"{folder}/latency-{i}.yaml"
    open(path + ".tmp", "w").write(body)
    t0 = time.time()
    os.rename(path + ".tmp", path)       # an editor's atomic save
    found = None
    # Only the lines appended since the last look are scanned (the harness must not
    # take the CPU the watcher is measured on), every 20 ms.
    scanned = len(lines())
    while found is None and time.time() < t0 + 60:
        log_lines = lines()
        for k in range(scanned, len(log_lines)):
            v = log_lines[k]
            if v.get("message") == "created" and v.get("task") == f"watch-latency-{i}":
                found = at(v)
                before = log_lines[:k]
                def last_before(m):
                    return next(b for b in reversed(before) if b.get("message") == m and b.get("task", f"watch-latency-{i}") == f"watch-latency-{i}")
                changed, sending = at(last_before("changed")), at(last_before("sending the create"))
                made = last_before("plan made")
                ahead = at(made) < changed
                sent = sending
                parts.append((changed - t0, sending - changed, made["elapsed_us"] / 1e6, 1 if ahead else 0))
                break
        scanned = len(log_lines)
        time.sleep(0.02)
    samples.append((sent - t0) * 1000)
    recorded.append((found - t0) * 1000)
med = [statistics.median(p[j] for p in parts) * 1000 for j in range(3)]
ahead = sum(p[3] for p in parts)
print(f"watch latency, {n:,} manifests, state in {label}, debounce 500 ms: median {statistics.median(samples):.0f} ms (min {min(samples):.0f}, max {max(samples):.0f}) from the last write to the create request (debounce {med[0]:.0f} ms, then {med[1]:.1f} ms to the request; {ahead} of {len(parts)} prepared during the quiet, the state read and the plan made in {med[2]:.1f} ms); {statistics.median(recorded):.0f} ms to the create answered and recorded")
PY
  kill -TERM $w; wait $w || true
}
# A receiver of alerts that answers every POST at once.
RP=$(port)
python3 - "$RP" <<'PY' >/dev/null 2>&1 &
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
    def log_message(self, *a): pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
export BENCH_ALERTS_URL=http://127.0.0.1:$RP/hook
latency 1000
latency 10000
[ "${BENCH_ALERTS:-1}" = 0 ] || latency 10000 "file, alerts on (notify: a generic receiver)"
FILE_PORT=$P
if [ -n "$PG" ]; then
  latency 10000 PostgreSQL --state "$PG" --state-schema "watchbench$$"
fi
P=$FILE_PORT

"$T" watch m10000 --endpoint http://127.0.0.1:$P --max-rate 0 --concurrency 16 --state s10000.json >/dev/null 2>w10k-idle.log &
W=$!
while ! grep -q reconciled w10k-idle.log; do sleep 0.2; done
ticks() { awk '{print $14 + $15}' /proc/$W/stat; }
a=$(ticks); sleep 10; b=$(ticks)
hz=$(getconf CLK_TCK)
echo "idle watcher, 10,000 manifests: $(( (b - a) * 1000 / hz )) ms of CPU in 10 s; RSS $(awk '/VmRSS/ {print int($2/1024)}' /proc/$W/status) MB"
kill -TERM $W; wait $W || true
