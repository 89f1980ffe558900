# Sourced by the watch benchmarks, from the repository's root: T, the taskform binary
# (TASKFORM_BIN when set: a binary built already, the tree then not built), and GEN,
# the manifest generator (built with the tree; with TASKFORM_BIN it must be built).
ROOT=$PWD
[ -n "${TASKFORM_BIN:-}" ] || cargo build --release --bin taskform --example gen-manifests >&2
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
case $TARGET in /*) ;; *) TARGET=$ROOT/$TARGET ;; esac
T=${TASKFORM_BIN:-$TARGET/release/taskform}
GEN=$TARGET/release/examples/gen-manifests
