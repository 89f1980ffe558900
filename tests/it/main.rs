//! The integration tests, one binary (as cargo and just do: one link instead of one
//! per file). Each module is one concern, as its file says; the helpers are in
//! [`common`]: a `Project` folder, the real binary, the emulator as a child process,
//! a scripted HTTP server, a PostgreSQL server (`common::pg`), git repositories
//! (`common::repo`) and the example environments (`common::envs`).
//!
//! Run one module with `cargo test --test it chaos::` (a test name filter).

mod common;

mod alerts;
mod apply;
mod chaos;
mod conformance;
mod day_two;
mod emulator;
mod environments;
mod everyday;
mod failfast;
mod faults;
mod fidelity;
mod gitwatch;
mod hash_props;
mod hostile;
mod incremental;
mod layering;
mod lifecycle;
mod onboarding;
mod pipelines;
mod plan;
mod postgres;
mod reconcile;
mod render;
mod schedule;
mod secrets;
mod sensitive;
mod service;
mod state_commands;
mod team_watch;
mod tls;
mod validation;
mod watch;
mod workflow;
