# Sourced by the benchmarks, from the repository's root: runs the calling script again
# inside a throwaway PostgreSQL cluster (pg_virtualenv, from PostgreSQL's Debian
# packages) unless TASKFORM_BENCH_POSTGRES names a server (postgres://..., the password
# in PGPASSWORD). Sets PG: the server's URL, empty when there is none (the PostgreSQL
# rows are then left out).
if [ -z "${TASKFORM_BENCH_POSTGRES:-}" ] && [ -z "${BENCH_IN_PG_VIRTUALENV:-}" ] && command -v pg_virtualenv >/dev/null; then
  exec pg_virtualenv -t env BENCH_IN_PG_VIRTUALENV=1 bash "$0" "$@"
fi
if [ -n "${BENCH_IN_PG_VIRTUALENV:-}" ]; then
  export TASKFORM_BENCH_POSTGRES="postgres://$PGUSER@$PGHOST:$PGPORT/$PGDATABASE?sslmode=disable"
  # pg_virtualenv's clusters run with fsync off; a real server syncs every commit.
  psql -q -c "ALTER SYSTEM SET fsync = on" -c "SELECT pg_reload_conf()" >/dev/null
fi
PG=${TASKFORM_BENCH_POSTGRES:-}
