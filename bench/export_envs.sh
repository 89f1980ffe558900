#!/usr/bin/env bash
# `export --all-envs` of three environments of 1,000 tasks each (issue #28.9):
#
#   bash bench/export_envs.sh
#
# Three emulators, each holding the same 1,000 tasks (prod's with another timeout, so
# that every task gets a patch there), and a repo whose taskform.yaml declares the
# three environments and nothing else. Prints the median wall time of the export
# (hyperfine, RUNS runs, default 5), and the API requests each emulator received
# during one export. Builds in $CARGO_TARGET_DIR when set (else target/).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
RUNS=${RUNS:-5}
command -v hyperfine >/dev/null || { echo "hyperfine is needed: apt-get install hyperfine" >&2; exit 1; }
cargo build --release --bin taskform --example gen-manifests >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
T=$TARGET/release/taskform
GEN=$TARGET/release/examples/gen-manifests
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
export TASKFORM_AUTH_TOKEN=taskform-demo-token NO_COLOR=1
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
count() { python3 -c "import json,urllib.request; print(len(json.load(urllib.request.urlopen('http://127.0.0.1:$1/_emulator/requests'))['requests']))"; }
"$GEN" m1000 1000
printf 'environments:\n' > settings.yaml
declare -A PORT
for e in dev staging prod; do
  PORT[$e]=$(port)
  "$T" emulator --listen "127.0.0.1:${PORT[$e]}" --rate-limit 0 >/dev/null 2>&1 &
done
sleep 0.5
for e in dev staging prod; do
  rm -rf "made-$e" && cp -r m1000 "made-$e"
  [ "$e" = prod ] && sed -i 's/max_time_out: [0-9]*/max_time_out: 61/' made-$e/*/*.yaml 2>/dev/null || true
  "$T" apply --yes "made-$e" --endpoint "http://127.0.0.1:${PORT[$e]}" --max-rate 0 --concurrency 16 --state "made-$e.json" >/dev/null
  printf '  %s:\n    endpoint: http://127.0.0.1:%s\n    project_id: 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d\n    workspace: demo-workspace\n' "$e" "${PORT[$e]}" >> settings.yaml
done
mkdir -p onboard && cp settings.yaml onboard/taskform.yaml
prepare="find $WORK/onboard -mindepth 1 ! -name taskform.yaml -delete"
hyperfine -N -r "$RUNS" --prepare "$prepare" --export-json export.json "$T export --all-envs onboard --max-rate 0" >/dev/null 2>&1
median=$(python3 -c "import json,statistics; r=json.load(open('export.json'))['results'][0]['times']; print(f'{statistics.median(r):.3f}')")
bash -c "$prepare"
declare -A BEFORE
for e in dev staging prod; do BEFORE[$e]=$(count "${PORT[$e]}"); done
"$T" export --all-envs onboard --max-rate 0 | head -5
for e in dev staging prod; do echo "requests to $e: $(( $(count "${PORT[$e]}") - ${BEFORE[$e]} ))"; done
echo "export --all-envs, 3 x 1,000 tasks: median $median s over $RUNS runs"
