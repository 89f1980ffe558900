#!/usr/bin/env bash
# The watcher and the team on one environment (issue #30):
#
#  1. An `apply --lock-timeout 30` from CI against an environment whose watcher
#     reconciles every second (`--interval 1`, 1,000 manifests, nothing to change):
#     the apply's wall time, median of 21, next to the same apply with no watcher. The
#     difference is the wait for the watcher's reconcile (the state lock is taken per
#     reconcile, never for the watcher's life).
#  2. `watch --all-envs` over 3 environments of 10,000 shared manifests each (3
#     emulators, 3 state files): a new shared manifest written by an atomic rename, and
#     the time until all three environments sent its create (the watcher's own debug
#     log), median of 7; the debounce is 500 ms. And the idle CPU of that watcher.
#
#   bash bench/team_watch.sh          (TASKFORM_BIN=path: that binary, nothing built)
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/binary.sh   # T and GEN (TASKFORM_BIN: a binary built already)
WORK=$(mktemp -d)
# Emulators started inside $(...) are no jobs of this shell: their pids go to a file.
trap 'kill $(jobs -p) $(cat "$WORK/pids" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
export TASKFORM_AUTH_TOKEN=taskform-demo-token NO_COLOR=1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
emulator() { local p; p=$(port); "$T" emulator --listen 127.0.0.1:$p --rate-limit 0 >/dev/null 2>&1 & echo $! >> "$WORK/pids"; sleep 0.3; echo "http://127.0.0.1:$p"; }

# 1. apply from CI while a watcher reconciles.
E=$(emulator)
"$GEN" m1000 1000 >/dev/null
"$T" apply --yes m1000 --endpoint "$E" --max-rate 0 --concurrency 16 --state s1000.json >/dev/null 2>&1
time_applies() {
  python3 - "$T" "$E" <<'PY'
import statistics, subprocess, sys, time
t, e = sys.argv[1], sys.argv[2]
s = []
for _ in range(21):
    t0 = time.time()
    subprocess.run([t, "apply", "--yes", "m1000", "--endpoint", e, "--max-rate", "0", "--state", "s1000.json", "--lock-timeout", "30"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    s.append((time.time() - t0) * 1000)
    time.sleep(0.137)
print(f"{statistics.median(s):.0f} {max(s):.0f}")
PY
}
read alone_med alone_max < <(time_applies)
"$T" watch m1000 --endpoint "$E" --max-rate 0 --state s1000.json --interval 1 >/dev/null 2>w1000.log &
W=$!
while ! grep -q reconciled w1000.log; do sleep 0.2; done
read with_med with_max < <(time_applies)
kill -TERM $W; wait $W || true
reconcile_ms=$(grep -o 'duration_ms=[0-9]*' w1000.log | tail -20 | sed 's/duration_ms=//' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
echo "apply --lock-timeout 30 of 1,000 unchanged manifests: median ${alone_med} ms alone (max ${alone_max}), ${with_med} ms while a watcher reconciles every second (max ${with_max}); the watcher's reconcile takes ${reconcile_ms} ms (median)"

# 2. watch --all-envs: 3 environments of 10,000 manifests.
mkdir -p repo
"$GEN" repo/tasks 10000 >/dev/null
rm -f repo/tasks/taskform.yaml
{
  echo "defaults:"
  echo "  user_id: 0833a573fe80d5401f6dc010a775569a"
  echo "  dir_id: \"0\""
  echo "environments:"
  for env in dev staging prod; do
    echo "  $env:"
    echo "    endpoint: $(emulator)"
    echo "    project_id: 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d"
    echo "    workspace: demo-workspace"
    echo "    state: state/$env.json"
  done
} > repo/taskform.yaml
RUST_LOG=taskform=debug "$T" watch --all-envs repo --max-rate 0 --concurrency 16 --log-format json >/dev/null 2>wall.log &
W=$!
python3 - repo wall.log <<'PY'
import json, os, statistics, sys, time
from datetime import datetime
folder, log = sys.argv[1], sys.argv[2]
offset, seen = 0, []
def lines():
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
deadline = time.time() + 900
while sum(1 for v in lines() if v.get("message") == "reconciled") < 3 and time.time() < deadline:
    time.sleep(0.2)
def at(v):
    return datetime.fromisoformat(v["timestamp"].replace("Z", "+00:00")).timestamp()
src = None
for root, _, files in os.walk(folder + "/tasks"):
    for f in files:
        if f.endswith(".yaml") and src is None:
            src = os.path.join(root, f)
template = open(src).read()
name = template.split("name: ", 1)[1].split("\n", 1)[0].strip().strip('"')
samples = []
for i in range(7):
    time.sleep(2.5)
    new = f"all-envs-latency-{i}"
    path = f"{folder}/tasks/{new}.yaml"
    open(path + ".tmp", "w").write(template.replace(name, new))
    t0 = time.time()
    os.rename(path + ".tmp", path)
    scanned = len(lines())
    sent = []
    while len(sent) < 3 and time.time() < t0 + 60:
        ls = lines()
        for v in ls[scanned:]:
            if v.get("message") == "sending the create" and v.get("task") == new:
                sent.append(at(v))
        scanned = len(ls)
        time.sleep(0.02)
    samples.append((max(sent) - t0) * 1000 if len(sent) == 3 else float("inf"))
print(f"watch --all-envs, 3 environments of 10,000 manifests, debounce 500 ms: a new shared manifest's create sent by all three in median {statistics.median(samples):.0f} ms (min {min(samples):.0f}, max {max(samples):.0f}) from the write")
PY
ticks() { awk '{print $14 + $15}' /proc/$W/stat; }
sleep 5   # past the last write: the first look at the state after it reads it once
a=$(ticks); sleep 10; b=$(ticks)
hz=$(getconf CLK_TCK)
echo "idle watch --all-envs, 3 x 10,000 manifests: $(( (b - a) * 1000 / hz )) ms of CPU in 10 s; RSS $(awk '/VmRSS/ {print int($2/1024)}' /proc/$W/status) MB"
kill -TERM $W; wait $W || true
