//! Stage 1: files to manifests. Discovery and parallel loading ([`manifest`]), YAML with
//! positions ([`yaml`]), `${VAR}` ([`interpolate`]), the create body's schema
//! ([`schema`]) and Quartz cron expressions ([`cron`]), `taskform.yaml` ([`settings`];
//! its `notify:` in [`alerts`]), where requests go and the state lives ([`target`]),
//! and problems as `file:line:col` ([`diagnostic`]). For the commands around them:
//! checking named files and folders ([`check`]), the canonical style of `taskform fmt`
//! ([`format`]) and the JSON Schema of a manifest ([`json_schema`]). The watcher
//! reloads through [`cache`], which re-reads only what changed.
//!
//! Uses nothing of the later stages.

pub mod alerts;
pub mod cache;
pub mod check;
pub mod cron;
pub mod diagnostic;
pub mod environment;
pub mod export;
pub mod format;
pub mod git;
pub mod interpolate;
pub mod json_schema;
pub mod manifest;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod target;
pub mod yaml;

pub use manifest::{LoadError, Loaded, Manifest, load};
