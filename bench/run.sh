#!/usr/bin/env bash
# Speed and memory of taskform (and, with --terraform, of Terraform on the same tasks).
#
#   bash bench/run.sh              # taskform figures, about a minute
#   bash bench/run.sh --terraform  # also Terraform's, side by side (slow: Terraform
#                                  # needs minutes per 1,000-resource apply)
#
# The PostgreSQL state backend is measured beside the file backend on a throwaway
# server that the script starts with pg_virtualenv (PostgreSQL's Debian packages),
# with fsync on; or on the server TASKFORM_BENCH_POSTGRES names (postgres://... with
# the password in PGPASSWORD). Without either, those rows are left out.
#
# Whole processes, timed with hyperfine (median, min, max) and peak memory from
# /usr/bin/time; for the lifecycle operations, also the API requests one run sends,
# counted from the emulator's request log (GET /_emulator/requests). Writes
# bench/RESULTS.md. Needs hyperfine (apt-get install hyperfine). Builds in
# $CARGO_TARGET_DIR when set (else target/).
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/postgres.sh
ROOT=$PWD
RUNS=${RUNS:-5}
WITH_TF=0
[ "${1:-}" = "--terraform" ] && WITH_TF=1
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

for n in 1000 10000; do
  if [ $WITH_TF = 1 ]; then "$GEN" "m$n" "$n" --terraform "tf$n"; else "$GEN" "m$n" "$n"; fi
done

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
P0=$(port); P50=$(port); PL=$(port)
"$T" emulator --listen 127.0.0.1:$P0 --rate-limit 0 >/dev/null 2>&1 &
"$T" emulator --listen 127.0.0.1:$P50 --rate-limit 0 --latency-ms 50 >/dev/null 2>&1 &
# The lifecycle measurements get an emulator of their own, holding only their tasks
# (the others above pile up every run's creates): a listing of the workspace then
# costs what it would for a workspace of 1,000 tasks.
"$T" emulator --listen 127.0.0.1:$PL --rate-limit 0 >/dev/null 2>&1 &
sleep 0.5

declare -A MED MIN MAX RSS REQ
# measure KEY PREPARE CMD...: hyperfine median/min/max (s), then the peak RSS (MB) of one run.
# /usr/bin/time prints on stderr after the command's own stderr; keep only its line.
measure_rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
measure() {
  local key=$1 prepare=$2; shift 2
  hyperfine -N -r "$RUNS" --prepare "$prepare" --export-json "$key.json" "$*" >/dev/null 2>&1
  read -r MED[$key] MIN[$key] MAX[$key] < <(python3 -c "import json,statistics; r=json.load(open('$key.json'))['results'][0]['times']; print(f'{statistics.median(r):.3f} {min(r):.3f} {max(r):.3f}')")
  bash -c "$prepare"
  local kb; kb=$(measure_rss "$@" || true)
  RSS[$key]=$(( ${kb:-0} / 1024 ))
  echo "$key: median ${MED[$key]} s (min ${MIN[$key]}, max ${MAX[$key]}), peak ${RSS[$key]} MB" >&2
}

# requests KEY PORT PREPARE CMD...: runs PREPARE, then CMD once, and counts the API
# requests the emulator on PORT received meanwhile, by kind.
emulator_requests() { python3 -c "import json,urllib.request; print(len(json.load(urllib.request.urlopen('http://127.0.0.1:$1/_emulator/requests'))['requests']))"; }
requests() {
  local key=$1 p=$2 prepare=$3; shift 3
  bash -c "$prepare"
  local before; before=$(emulator_requests "$p")
  "$@" >/dev/null 2>&1 || true
  REQ[$key]=$(python3 - "$p" "$before" <<'PY'
import collections, json, sys, urllib.request
port, skip = sys.argv[1], int(sys.argv[2])
reqs = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/_emulator/requests"))["requests"][skip:]
def kind(r):
    path = r["path"]
    if "action=" in path:
        return path.split("action=")[1]
    if path.endswith("/search"):
        return "search"
    if path.endswith("/create"):
        return "create"
    return {"GET": "show", "PUT": "PUT", "DELETE": "DELETE"}.get(r["method"], r["method"])
c = collections.Counter(kind(r) for r in reqs)
refused = sum(1 for r in reqs if r["status"] != 200)
parts = ", ".join(f"{n:,} {k}" for k, n in c.most_common())
print(f"{len(reqs):,} ({parts}{'; ' + str(refused) + ' refused' if refused else ''})")
PY
)
  echo "$key: ${REQ[$key]} requests" >&2
}

# Every run of an apply from an empty state creates its tasks again on the same
# emulator: --allow-duplicate-names skips the search for existing names (the check
# that would refuse them), so each run measures the creates alone.
for n in 1000 10000; do
  measure "taskform_first_plan_$n" "true" "$T" plan "m$n" --state "first$n.json"
  measure "taskform_apply0_$n" "rm -f s$n.json s$n.json.journal" "$T" apply --yes "m$n" --endpoint "http://127.0.0.1:$P0" --max-rate 0 --concurrency 16 --allow-duplicate-names --state "s$n.json"
  measure "taskform_noop_plan_$n" "true" "$T" plan "m$n" --state "s$n.json"
done
# The same on a PostgreSQL state (loopback): the no-op plans read states copied from
# the file states just written; the apply starts each run from an empty state.
if [ -n "$PG" ]; then
  for n in 1000 10000; do
    "$T" state copy "s$n.json" "$PG" --state-name "noop$n" --force >/dev/null
    measure "pg_noop_plan_$n" "true" "$T" plan "m$n" --state "$PG" --state-name "noop$n"
  done
  printf '#!/bin/sh\npsql -q -c "DELETE FROM taskform.states WHERE name = %s" -c "DELETE FROM taskform.journal WHERE state = %s" >/dev/null\n' "'a1000'" "'a1000'" > prep-pg.sh
  chmod +x prep-pg.sh
  measure "pg_apply0_1000" "./prep-pg.sh" "$T" apply --yes m1000 --endpoint "http://127.0.0.1:$P0" --max-rate 0 --concurrency 16 --allow-duplicate-names --state "$PG" --state-name a1000
  PG_COMMITS=$(psql -tA -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
  ./prep-pg.sh
  "$T" apply --yes m1000 --endpoint "http://127.0.0.1:$P0" --max-rate 0 --concurrency 16 --allow-duplicate-names --state "$PG" --state-name a1000 >/dev/null 2>&1
  PG_COMMITS=$(( $(psql -tA -c "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()") - PG_COMMITS ))
  echo "pg_apply0_1000: about $PG_COMMITS commits per run" >&2
fi
measure "taskform_apply50_1000" "rm -f l.json l.json.journal" "$T" apply --yes m1000 --endpoint "http://127.0.0.1:$P50" --max-rate 0 --concurrency 16 --allow-duplicate-names --state l.json

# Lifecycle, 1,000 tasks at 0 ms (half of them enabled CRON tasks, which the emulator
# keeps "scheduling"), on an emulator holding just them: a refresh without drift (a
# listing of the workspace), an import of every task (a listing), an update in place
# of every task (the 500 scheduled ones are stopped first and started again after
# their PUT), a prune of every task (the scheduled ones stopped first).
cp -r m1000 m1000u
find m1000u -name '*.yaml' ! -name taskform.yaml -exec sed -i 's/queue: default/queue: batch/' {} +
mkdir -p empty && cp m1000/taskform.yaml empty/
EL="http://127.0.0.1:$PL"
"$T" apply --yes m1000 --endpoint "$EL" --max-rate 0 --concurrency 16 --state L.json >/dev/null 2>&1
measure "taskform_refresh_1000" "true" "$T" refresh m1000 --endpoint "$EL" --max-rate 0 --state L.json
requests "taskform_refresh_1000" "$PL" "true" "$T" refresh m1000 --endpoint "$EL" --max-rate 0 --state L.json
measure "taskform_import_1000" "rm -f i.json i.json.journal" "$T" import m1000 --endpoint "$EL" --max-rate 0 --state i.json
requests "taskform_import_1000" "$PL" "rm -f i.json i.json.journal" "$T" import m1000 --endpoint "$EL" --max-rate 0 --state i.json
measure "taskform_update_1000" "cp L.json u.json" "$T" apply --yes m1000u --on-change update --endpoint "$EL" --max-rate 0 --concurrency 16 --state u.json
requests "taskform_update_1000" "$PL" "cp L.json u.json" "$T" apply --yes m1000u --on-change update --endpoint "$EL" --max-rate 0 --concurrency 16 --state u.json
# hyperfine -N runs --prepare without a shell: the prune's setup (1,000 creates) is a script.
printf '#!/bin/sh\nrm -f p.json p.json.journal\nexec "%s" apply --yes m1000 --endpoint "%s" --max-rate 0 --concurrency 16 --allow-duplicate-names --state p.json >/dev/null 2>&1\n' "$T" "$EL" > prep-prune.sh
chmod +x prep-prune.sh
measure "taskform_prune_1000" "./prep-prune.sh" "$T" apply --yes empty --prune --force-prune --endpoint "$EL" --max-rate 0 --concurrency 16 --state p.json
requests "taskform_prune_1000" "$PL" "./prep-prune.sh" "$T" apply --yes empty --prune --force-prune --endpoint "$EL" --max-rate 0 --concurrency 16 --state p.json

# Environments: one repo of 10,000 shared manifests and three environments, each
# with a state of its own holding the 10,000 tasks; `plan --all-envs` plans the three
# (a no-op). And `export` of the 1,000 tasks of a workspace into an empty folder.
mkdir -p envs && cp -r m10000/. envs/
printf 'defaults:\n  user_id: 0833a573fe80d5401f6dc010a775569a\nenvironments:\n' > envs/taskform.yaml
for e in dev staging prod; do
  printf '  %s:\n    project_id: 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d\n    workspace: demo-workspace\n    state: ../s10000-%s.json\n' "$e" "$e" >> envs/taskform.yaml
  cp s10000.json "s10000-$e.json"
done
measure "taskform_all_envs_30000" "true" "$T" plan --all-envs envs
EX="http://127.0.0.1:$PL"
measure "taskform_export_1000" "rm -rf exported" "$T" export exported --endpoint "$EX" --max-rate 0 --project-id 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d --workspace demo-workspace
requests "taskform_export_1000" "$PL" "rm -rf exported" "$T" export exported --endpoint "$EX" --max-rate 0 --project-id 0a1b2c3d4e5f4a6b8c9d0e1f2a3b4c5d --workspace demo-workspace

if [ $WITH_TF = 1 ]; then
  export TF_CLI_CONFIG_FILE=/dev/null TF_IN_AUTOMATION=1
  for n in 1000 10000; do
    (cd "tf$n" && terraform init -input=false >/dev/null)
    measure "terraform_first_plan_$n" "rm -f tf$n/terraform.tfstate" terraform -chdir="tf$n" plan -input=false -refresh=false -lock=false
  done
  TF_RUNS=${TF_APPLY_RUNS:-$RUNS}
  RUNS_SAVED=$RUNS; RUNS=$TF_RUNS
  measure "terraform_apply_1000" "rm -f tf1000/terraform.tfstate" terraform -chdir=tf1000 apply -input=false -auto-approve -lock=false
  RUNS=$RUNS_SAVED
    # Terraform rewrites its whole state after every resource it applies: its own
  # 10,000-resource apply ran for over 30 minutes here without finishing. The state for
  # its no-op plan is written in the format of the 1,000-resource state it just wrote.
  python3 "$ROOT/bench/tfstate.py" tf1000/terraform.tfstate tf10000
  measure "terraform_noop_plan_1000" "true" terraform -chdir=tf1000 plan -input=false -lock=false
  measure "terraform_noop_plan_10000" "true" terraform -chdir=tf10000 plan -input=false -lock=false
fi

cd "$ROOT"
{
  echo "# Benchmark results"
  echo
  echo "Measured $(date -u +%Y-%m-%d) with \`bash bench/run.sh${1:+ $1}\` ($RUNS runs each; whole processes; hyperfine median, min-max; peak RSS from /usr/bin/time)."
  echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(uname -sr)."
  echo "Manifests: generated by \`bench/gen.rs\`, ~1 KB each like examples/tasks. Apply runs against the built-in emulator (\`--rate-limit 0\`) with \`--max-rate 0 --concurrency 16\`."
  echo
  echo "| measurement | taskform median (min-max) | peak MB |$([ $WITH_TF = 1 ] && echo " Terraform median (min-max) | peak MB | Terraform / taskform |")"
  echo "|---|---|---|$([ $WITH_TF = 1 ] && echo "---|---|---|")"
  row() {
    local label=$1 k=$2 tk=${3:-}
    local line="| $label | ${MED[$k]} s (${MIN[$k]}-${MAX[$k]}) | ${RSS[$k]} |"
    if [ $WITH_TF = 1 ]; then
      if [ -n "$tk" ] && [ -n "${MED[$tk]:-}" ]; then
        line+=" ${MED[$tk]} s (${MIN[$tk]}-${MAX[$tk]}) | ${RSS[$tk]} | $(python3 -c "print(f'{${MED[$tk]}/${MED[$k]}:.0f}x')") |"
      else
        line+=" | | |"
      fi
    fi
    echo "$line"
  }
  row "first plan, 1,000 tasks" taskform_first_plan_1000 terraform_first_plan_1000
  row "first plan, 10,000 tasks" taskform_first_plan_10000 terraform_first_plan_10000
  row "apply, 1,000 creates, server at 0 ms" taskform_apply0_1000 terraform_apply_1000
  row "apply, 10,000 creates, server at 0 ms" taskform_apply0_10000
  row "apply, 1,000 creates, server at 50 ms" taskform_apply50_1000
  row "no-op plan, 1,000 tasks" taskform_noop_plan_1000 terraform_noop_plan_1000
  row "no-op plan, 10,000 tasks" taskform_noop_plan_10000 terraform_noop_plan_10000
  echo
  if [ -n "$PG" ]; then
    echo "## State in PostgreSQL, beside the state file"
    echo
    echo "The same runs with \`--state postgres://...\` on a PostgreSQL $(psql -tA -c 'SHOW server_version' | cut -d' ' -f1) server on loopback (fsync on), measured in the same run as the file backend above. The no-op plans read states copied with \`taskform state copy\` from the file states; the apply starts from an empty state each run."
    echo
    echo "| measurement | state file median (min-max) | peak MB | PostgreSQL median (min-max) | peak MB | PostgreSQL / file |"
    echo "|---|---|---|---|---|---|"
    prow() { echo "| $1 | ${MED[$2]} s (${MIN[$2]}-${MAX[$2]}) | ${RSS[$2]} | ${MED[$3]} s (${MIN[$3]}-${MAX[$3]}) | ${RSS[$3]} | $(python3 -c "print(f'{${MED[$3]}/${MED[$2]}:.2f}x')") |"; }
    prow "no-op plan, 1,000 tasks" taskform_noop_plan_1000 pg_noop_plan_1000
    prow "no-op plan, 10,000 tasks" taskform_noop_plan_10000 pg_noop_plan_10000
    prow "apply, 1,000 creates, server at 0 ms" taskform_apply0_1000 pg_apply0_1000
    echo
    echo "One PostgreSQL apply of 1,000 creates made about $PG_COMMITS commits (pg_stat_database.xact_commit): the journal's group commits (an intent batch before the creates it covers are sent, a batch of created records as they arrive) and the state's writes."
  fi
  echo
  echo "## Lifecycle: time and requests"
  echo
  echo "1,000 generated tasks, half of them enabled CRON tasks (scheduling), on an emulator at 0 ms (\`--rate-limit 0\`) that holds only them; \`--max-rate 0\`, apply with \`--concurrency 16\`. Requests: what one run sends, counted from the emulator's request log (\`GET /_emulator/requests\`)."
  echo
  echo "| measurement | taskform median (min-max) | peak MB | requests |"
  echo "|---|---|---|---|"
  lrow() { echo "| $1 | ${MED[$2]} s (${MIN[$2]}-${MAX[$2]}) | ${RSS[$2]} | ${REQ[$2]} |"; }
  lrow "\`refresh\`, 1,000 tasks, no drift" taskform_refresh_1000
  lrow "\`import\`, 1,000 tasks already on the server" taskform_import_1000
  lrow "\`apply --on-change update\`, 1,000 changed tasks, 500 scheduled" taskform_update_1000
  lrow "\`apply --prune --force-prune\`, 1,000 deletes, 500 scheduled" taskform_prune_1000
  lrow "\`export\` of the 1,000 tasks into an empty folder" taskform_export_1000
  echo
  echo "## Environments"
  echo
  echo "| measurement | taskform median (min-max) | peak MB |"
  echo "|---|---|---|"
  echo "| \`plan --all-envs\`, 3 environments of the same 10,000 shared manifests, each with its state of 10,000 tasks (no-op) | ${MED[taskform_all_envs_30000]} s (${MIN[taskform_all_envs_30000]}-${MAX[taskform_all_envs_30000]}) | ${RSS[taskform_all_envs_30000]} |"
} > bench/RESULTS.md.new
mv bench/RESULTS.md.new bench/RESULTS.md
cat bench/RESULTS.md
