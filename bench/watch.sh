#!/usr/bin/env bash
# Watch mode: time from the last write of a burst to the create request (repo of 1,000
# manifests, default debounce 500 ms), and idle CPU of a watcher on 10,000 manifests.
#
#   bash bench/watch.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
cargo build --release --bin taskform --example gen-manifests >&2
T=$ROOT/target/release/taskform
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
export TASKFORM_AUTH_TOKEN=taskform-demo-token NO_COLOR=1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P=$(port)
"$T" emulator --listen 127.0.0.1:$P --rate-limit 0 >/dev/null 2>&1 &
sleep 0.3

"$ROOT/target/release/examples/gen-manifests" m1k 1000
"$T" watch m1k --endpoint http://127.0.0.1:$P --max-rate 0 --concurrency 16 --state s1k.json >/dev/null 2>w1k.log &
W=$!
python3 - "$P" <<'PY'
import json, sys, time, urllib.request, statistics
port = sys.argv[1]
def creates():
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/requests") as r:
        return [q for q in json.load(r)["requests"] if q["path"].endswith("/create")]
deadline = time.time() + 60
while len(creates()) < 1000 and time.time() < deadline:
    time.sleep(0.1)
samples = []
for i in range(5):
    time.sleep(1.5)
    body = open("m1k/group-000/bench-task-00000.yaml").read().replace("bench-task-00000", f"watch-latency-{i}")
    path = f"m1k/latency-{i}.yaml"
    open(path + ".tmp", "w").write(body)
    import os
    os.rename(path + ".tmp", path)       # an editor's atomic save
    t0 = time.time()
    while not any(q.get("name") == f"watch-latency-{i}" for q in creates()):
        time.sleep(0.002)
    samples.append((time.time() - t0) * 1000)
print(f"watch latency, 1,000 manifests, debounce 500 ms: median {statistics.median(samples):.0f} ms (min {min(samples):.0f}, max {max(samples):.0f}) from the last write to the create request")
PY
kill -TERM $W; wait $W || true

"$ROOT/target/release/examples/gen-manifests" m10k 10000
"$T" watch m10k --endpoint http://127.0.0.1:$P --max-rate 0 --concurrency 16 --state s10k.json >/dev/null 2>w10k.log &
W=$!
while ! grep -q reconciled w10k.log; do sleep 0.2; done
ticks() { awk '{print $14 + $15}' /proc/$W/stat; }
a=$(ticks); sleep 10; b=$(ticks)
hz=$(getconf CLK_TCK)
echo "idle watcher, 10,000 manifests: $(( (b - a) * 1000 / hz )) ms of CPU in 10 s; RSS $(awk '/VmRSS/ {print int($2/1024)}' /proc/$W/status) MB"
kill -TERM $W; wait $W || true
