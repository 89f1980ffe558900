//! taskform: GitOps for Huawei Cloud DataArts Catalog metadata collection tasks.
//!
//! Data flows one way: files → [`manifest`] (with [`yaml`], [`interpolate`],
//! [`schema`], [`settings`]) → [`plan`] (pure) → apply's actions → [`state`] via the
//! [`store`] (state file, [`journal`], [`lock`]). [`render`] turns plans into text or
//! JSON; [`commands`] wires it all for the CLI in `main.rs`.
//!
//! Reaching the API: [`client`] (with [`auth`], [`signer`], [`api`]) sends requests;
//! [`apply`] sends a plan's creates, updates and deletes with a journal. Before
//! planning, the server can be read into the state: [`settle`] (in-doubt creates),
//! [`adopt`] (`import`, `--adopt`) and [`refresh`] (drift). [`watch`] and
//! [`emulator`] are the long-running modes.

pub mod adopt;
pub mod api;
pub mod apply;
pub mod auth;
pub mod client;
pub mod clock;
pub mod commands;
pub mod diagnostic;
pub mod diff;
pub mod emulator;
pub mod exit;
pub mod fsutil;
pub mod hash;
pub mod interpolate;
pub mod journal;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod pacer;
pub mod plan;
pub mod refresh;
pub mod render;
pub mod saved_plan;
pub mod schema;
pub mod settings;
pub mod settle;
pub mod signals;
pub mod signer;
pub mod state;
pub mod store;
pub mod style;
pub mod target;
pub mod watch;
pub mod yaml;
