//! Stage 1: files to manifests. Discovery and parallel loading ([`manifest`]), YAML with
//! positions ([`yaml`]), `${VAR}` ([`interpolate`]), the create body's schema
//! ([`schema`]), `taskform.yaml` ([`settings`]), where requests go and the state lives
//! ([`target`]), and problems as `file:line:col` ([`diagnostic`]).
//!
//! Uses nothing of the later stages.

pub mod diagnostic;
pub mod interpolate;
pub mod manifest;
pub mod schema;
pub mod secret;
pub mod settings;
pub mod target;
pub mod yaml;

pub use manifest::{LoadError, Loaded, Manifest, load};
